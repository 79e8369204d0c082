"""Every gradient-balancing method keeps the caller's dtype and device and agrees across them.

float32 and float64 results agree to float32 precision on a well-conditioned Jacobian; on CUDA
(run only where a GPU is present) results equal the CPU ones. The K×K solves of Gram-based methods
run in float64 on the CPU by design; the direction is returned on the input's device and dtype.
"""

import pytest
import torch

import reference_impls

NAMES = [n for n in reference_impls.names() if reference_impls.info(n).family in ("gradient-weighting", "gradient-manipulation")]


def _inputs(dtype, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    losses = torch.tensor([0.7, 1.3, 2.1], dtype=torch.float64)
    return J.to(dtype=dtype, device=device), losses.to(dtype=dtype, device=device)


def _call(name, J, losses):
    method = reference_impls.create(name)
    return method(J, losses) if method.needs_losses else method(J)


@pytest.mark.parametrize("name", NAMES)
def test_float32_keeps_its_dtype_and_matches_float64(name):
    d64 = _call(name, *_inputs(torch.float64))
    d32 = _call(name, *_inputs(torch.float32))
    assert d64.dtype == torch.float64 and d32.dtype == torch.float32
    assert torch.allclose(d32.double(), d64, rtol=1e-4, atol=1e-4 * float(d64.abs().max())), (d32, d64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_results_stay_on_the_device_and_equal_cpu_results(name):
    d_cpu = _call(name, *_inputs(torch.float64))
    d_gpu = _call(name, *_inputs(torch.float64, "cuda"))
    assert d_gpu.device.type == "cuda"
    assert torch.allclose(d_gpu.cpu(), d_cpu, rtol=1e-6, atol=1e-9)
