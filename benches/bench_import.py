"""`import autotimm` stays cheap: heavy submodules load lazily.

Prints the best-of-N wall time of a fresh interpreter importing autotimm, beside
one importing torch (the floor of any use of the model) and an empty one.
"""

from __future__ import annotations

import subprocess
import sys
import time


def best_import_time(statement: str, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def test_import_time_beside_torch() -> None:
    empty = best_import_time("pass")
    ours = best_import_time("import autotimm")
    torch = best_import_time("import torch")
    print(
        f"\nimport time (fresh interpreter, best of 5): python {empty * 1e3:.0f} ms, "
        f"autotimm {ours * 1e3:.0f} ms, torch {torch * 1e3:.0f} ms"
    )
    assert ours < torch
