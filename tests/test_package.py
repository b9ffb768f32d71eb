"""The installed distribution: version, lazy import, typed stub, module aliases."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from importlib import resources

import autotimm


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_version_comes_from_the_package_metadata() -> None:
    assert autotimm.__version__ == importlib.metadata.version("autotimm")
    assert autotimm.__version__ != "unknown"


def test_import_is_lazy() -> None:
    heavy = ("torch", "timm", "lightning", "torchmetrics")
    loaded = run_python(
        f"import sys, autotimm; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    assert loaded == ""


def test_names_resolve_on_first_use() -> None:
    name = run_python("import autotimm; print(autotimm.ObjectDetector.__name__)")
    assert name == "ObjectDetector"
    assert "ObjectDetector" in dir(autotimm)


def test_unknown_name_raises_attribute_error() -> None:
    try:
        autotimm.NoSuchThing  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_singular_module_aliases() -> None:
    import autotimm.loss
    import autotimm.task

    assert autotimm.loss is importlib.import_module("autotimm.losses")
    assert autotimm.task.ObjectDetector is autotimm.ObjectDetector


def test_ships_typed_stub_and_marker() -> None:
    files = resources.files("autotimm")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_native.pyi").is_file()
