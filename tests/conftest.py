"""Settings shared by every test.

The suite runs as two pytest-xdist workers on two cores; one BLAS/OpenMP thread per worker avoids
oversubscription, which makes the many small K×K solves far slower than they need to be.
"""

import os


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
