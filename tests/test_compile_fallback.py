"""``ObjectDetector.forward`` runs eagerly after a compilation failure, and only then:
an out-of-memory error or an error of the input is raised and the model stays compiled.

The exceptions are real ones, raised by Dynamo on a small ``nn.Linear``; the
detector's compiled call is replaced by one that raises them (no compilation of
the detector itself, so the file takes seconds)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn as nn

from autotimm import FeatureBackboneConfig, ObjectDetector
from autotimm.core.compilation import is_compilation_error


def _failing_backend(gm: Any, example_inputs: Any) -> Any:
    raise RuntimeError("the C++ compiler is missing")


def _raised(fn: Any, *args: Any) -> BaseException:
    try:
        fn(*args)
    except Exception as exc:  # the test keeps what was raised
        return exc
    raise AssertionError("expected an exception")


@pytest.fixture(scope="module")
def errors() -> dict[str, BaseException]:
    torch._dynamo.reset()
    backend_failure = _raised(
        torch.compile(nn.Linear(2, 2), backend=_failing_backend), torch.zeros(1, 2)
    )
    shape_error = _raised(torch.compile(nn.Linear(2, 2), backend="eager"), torch.zeros(1, 3))
    oom_in_compile = _raised(
        torch.compile(nn.Linear(2, 2), backend=_oom_backend), torch.zeros(1, 2)
    )
    torch._dynamo.reset()
    return {
        "backend": backend_failure,
        "shape": shape_error,
        "oom_in_compile": oom_in_compile,
        "oom": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        "runtime": RuntimeError("something else"),
    }


def _oom_backend(gm: Any, example_inputs: Any) -> Any:
    raise torch.OutOfMemoryError("out of memory while autotuning")


def test_classification(errors) -> None:
    assert type(errors["backend"]).__name__ == "BackendCompilerFailed"
    assert type(errors["shape"]).__name__ == "TorchRuntimeError"
    assert is_compilation_error(errors["backend"])
    assert not is_compilation_error(errors["shape"])
    assert not is_compilation_error(errors["oom_in_compile"])
    assert not is_compilation_error(errors["oom"])
    assert not is_compilation_error(errors["runtime"])
    assert not is_compilation_error(MemoryError())


@pytest.fixture
def detector() -> ObjectDetector:
    model = ObjectDetector(
        FeatureBackboneConfig("test_byobnet", pretrained=False),
        num_classes=2,
        fpn_channels=8,
        head_num_convs=1,
        compile_model=False,
        deterministic=False,
    )
    for name in ("backbone", "fpn", "head"):  # wrapped, never called compiled
        setattr(model, name, torch.compile(getattr(model, name)))
    assert model.is_compiled
    return model.eval()


def _fail_while_compiled(model: ObjectDetector, exc: BaseException) -> None:
    eager_run = model._run_model

    def run(images: torch.Tensor) -> Any:
        if model.is_compiled:
            raise exc
        return eager_run(images)

    model._run_model = run  # type: ignore[method-assign]


def test_compilation_failure_falls_back(detector, errors) -> None:
    _fail_while_compiled(detector, errors["backend"])
    images = torch.zeros(1, 3, 64, 64)
    with pytest.warns(UserWarning, match="torch.compile failed at the first forward"):
        cls, _, _ = detector(images)
    assert not detector.is_compiled
    assert cls[0].shape == (1, 2, 8, 8)


@pytest.mark.parametrize("kind", ["oom", "oom_in_compile", "shape", "runtime"])
def test_other_errors_are_raised_and_the_model_stays_compiled(detector, errors, kind) -> None:
    _fail_while_compiled(detector, errors[kind])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(type(errors[kind])) as raised:
            detector(torch.zeros(1, 3, 64, 64))
    assert raised.value is errors[kind]
    assert detector.is_compiled
