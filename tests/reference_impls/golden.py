"""The golden input shared by every method's tests (TorchJD's J_base, so outputs can be compared).

Row 1 and row 2 conflict (⟨g_1, g_2⟩ = −22 < 0) and have different norms (√18 vs √38).
Each method's test file pins its own output on J_BASE, computed once from the method and checked
by hand against the paper's formula (and against TorchJD's value where TorchJD has the method).
"""

import torch

J_BASE_LIST = [[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]


def j_base(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(J_BASE_LIST, dtype=dtype)
