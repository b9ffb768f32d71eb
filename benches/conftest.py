"""Shared benchmark helpers.

* ``bench_*.py`` files are test modules (``python_files`` in pyproject.toml),
  so ``pytest benches`` (and ``pytest benches --benchmark-disable`` in CI) runs them.
* ``single_thread``: runs a benchmark with ``torch.set_num_threads(1)``.
* ``compare_speed``: times a reference and our implementation side by side
  (interleaved rounds, ``time.perf_counter``) and records the ratio; a table of
  all ratios is printed at the end of the run. With ``--benchmark-disable`` it
  calls each side once, so the benches stay quick as tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch


@dataclass
class SpeedResult:
    name: str
    reference_s: float
    ours_s: float

    @property
    def ratio(self) -> float:
        return self.reference_s / self.ours_s


_RESULTS: list[SpeedResult] = []


@pytest.fixture
def single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _per_call(fn: Callable[[], object], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops


@pytest.fixture
def compare_speed(request: pytest.FixtureRequest) -> Callable[..., SpeedResult]:
    quick = bool(request.config.getoption("benchmark_disable", False))

    def run(
        name: str,
        reference: Callable[[], object],
        ours: Callable[[], object],
        *,
        rounds: int = 21,
        block_s: float = 0.005,
    ) -> SpeedResult:
        """Best per-call time of each side over interleaved rounds."""
        if quick:
            ref_s, ours_s = _per_call(reference, 1), _per_call(ours, 1)
        else:
            reference(), ours()  # warm up
            loops = {}
            for side, fn in (("ref", reference), ("ours", ours)):
                once = max(_per_call(fn, 1), 1e-7)
                loops[side] = max(1, int(block_s / once))
            ref_s = ours_s = float("inf")
            for _ in range(rounds):
                ref_s = min(ref_s, _per_call(reference, loops["ref"]))
                ours_s = min(ours_s, _per_call(ours, loops["ours"]))
        result = SpeedResult(name, ref_s, ours_s)
        _RESULTS.append(result)
        print(
            f"\n{name}: reference {ref_s * 1e6:.1f} us, ours {ours_s * 1e6:.1f} us, "
            f"speed-up {result.ratio:.1f}x"
        )
        return result

    return run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RESULTS:
        return
    terminalreporter.section("speed-up (best of interleaved rounds)")
    width = max(len(r.name) for r in _RESULTS)
    for r in _RESULTS:
        terminalreporter.write_line(
            f"{r.name:<{width}}  reference {r.reference_s * 1e6:10.1f} us   "
            f"ours {r.ours_s * 1e6:9.1f} us   {r.ratio:6.1f}x"
        )
