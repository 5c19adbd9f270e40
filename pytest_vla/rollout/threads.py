"""How many threads a process may use when several share the host's cores.

N workers that each start one thread per core (onnxruntime's intra-op pool, OpenMP, BLAS,
llvmpipe behind OSMesa) oversubscribe the cores N times over: each gets its share instead.
"""

from __future__ import annotations

import os

# OpenMP, MKL and OpenBLAS pools, and llvmpipe's rasteriser threads (OSMesa rendering).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LP_NUM_THREADS")


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, as xdist's ``-n auto`` counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, available_cpus() // max(1, workers))
