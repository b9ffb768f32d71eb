"""Which exceptions of a ``torch.compile``\\ d model are compilation failures.

``ObjectDetector.forward`` falls back to eager execution on these only: a
failure of TorchDynamo or of the compiler backend (inductor: C++/CUDA/Triton
compilation, lowering, a missing compiler or Triton). An error of the user's
program or input seen while tracing (``TorchRuntimeError``, e.g. a shape
mismatch; ``UserError``; exceptions of user code observed by Dynamo), an
out-of-memory error anywhere in the exception chain, and any other exception
are not: they are raised as they are, the model stays compiled.
"""

from __future__ import annotations

__all__ = ["is_compilation_error"]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _compile_error_types() -> tuple[
    tuple[type[BaseException], ...], tuple[type[BaseException], ...]
]:
    """(compilation failures, user errors reported through Dynamo)."""
    failures: list[type[BaseException]] = []
    user: list[type[BaseException]] = []
    try:
        from torch._dynamo import exc as dynamo_exc
    except ImportError:  # pragma: no cover - torch without Dynamo
        return (), ()
    failures.append(dynamo_exc.TorchDynamoException)
    failures += [
        getattr(dynamo_exc, n) for n in ("TritonUnavailableError",) if hasattr(dynamo_exc, n)
    ]
    user += [
        getattr(dynamo_exc, n)
        for n in ("TorchRuntimeError", "UserError", "ObservedException")
        if hasattr(dynamo_exc, n)
    ]
    try:
        from torch._inductor import exc as inductor_exc
    except ImportError:  # pragma: no cover - torch without inductor
        inductor_exc = None
    if inductor_exc is not None:
        failures += [
            getattr(inductor_exc, n)
            for n in (
                "CppCompileError",
                "CppWrapperCodegenError",
                "InvalidCxxCompiler",
                "OperatorIssue",
                "SubgraphLoweringException",
            )
            if hasattr(inductor_exc, n)
        ]
    return tuple(failures), tuple(user)


def is_compilation_error(exc: BaseException) -> bool:
    """``True`` when ``exc`` is a failure to compile, not an error of the program or a
    lack of memory (see the module docstring).

    Parameters
    ----------
    exc:
        An exception raised by a call of a compiled module.
    """
    import torch

    chain = _chain(exc)
    if any(isinstance(e, (torch.OutOfMemoryError, MemoryError)) for e in chain):
        return False
    failures, user = _compile_error_types()
    if isinstance(exc, user):
        return False
    return isinstance(exc, failures)
