"""Checks what a built wheel ships: the package, the abi3 extension, the typed
stub and py.typed; no tests, benchmarks or build leftovers. Prints the size."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path


def check(wheel: Path) -> list[str]:
    names = zipfile.ZipFile(wheel).namelist()
    problems = []
    required = ["autotimm/__init__.py", "autotimm/py.typed", "autotimm/_native.pyi"]
    problems += [f"missing {name}" for name in required if name not in names]
    if not any(n.startswith("autotimm/_native") and ".abi3." in n for n in names):
        problems.append("missing the abi3 extension autotimm/_native.abi3.*")
    if "abi3" not in wheel.name:
        problems.append(f"wheel is not tagged abi3: {wheel.name}")
    leftovers = ("tests/", "benches/", "target/", "__pycache__", ".pyc", ".rs", "Cargo.")
    problems += [f"unexpected file {n}" for n in names if any(p in n for p in leftovers)]
    return problems


def main(dist: str) -> int:
    wheels = sorted(Path(dist).glob("*.whl"))
    if len(wheels) != 1:
        print(f"expected exactly one wheel in {dist}, found {[w.name for w in wheels]}")
        return 1
    wheel = wheels[0]
    problems = check(wheel)
    for problem in problems:
        print(f"{wheel.name}: {problem}")
    if not list(Path(dist).glob("*.tar.gz")):
        problems.append("no sdist")
        print("no sdist in dist/")
    print(f"{wheel.name}: {wheel.stat().st_size / 2**20:.2f} MiB, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist"))
