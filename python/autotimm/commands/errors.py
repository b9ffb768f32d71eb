"""User errors of the ``autotimm`` command: one or two lines naming the fix, no traceback.

Full tracebacks are printed with ``--verbose`` or ``AUTOTIMM_VERBOSE=1``; the
same switch lets third-party notices (Lightning's tips, device lines, known
deprecation warnings) through.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

__all__ = [
    "VERBOSE_ENV",
    "UserError",
    "condense_parser_error",
    "pop_verbose",
    "quiet_third_party",
    "report_error",
    "run_reporting_errors",
]

#: Environment variable that turns on tracebacks and third-party notices.
VERBOSE_ENV = "AUTOTIMM_VERBOSE"
_HINT = f"(add --verbose or set {VERBOSE_ENV}=1 for the full traceback)"
_NOISY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning")
_NOISY_MODULES = (
    r"(lightning|lightning_fabric|pytorch_lightning|torch|torchvision|timm|jsonargparse)(\.|$)"
)


class UserError(Exception):
    """A mistake in the command line or its inputs; the message names the fix."""


def pop_verbose(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """``(verbose, argv without --verbose)``; verbose also when ``AUTOTIMM_VERBOSE`` is set."""
    args = list(argv)
    verbose = os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")
    if "--verbose" in args:
        verbose = True
        args = [a for a in args if a != "--verbose"]
    return verbose, args


def quiet_third_party(verbose: bool) -> None:
    """Silence Lightning's info lines and third-party warnings unless ``verbose``."""
    if verbose:
        return
    import lightning.pytorch  # noqa: F401  (sets its loggers' levels on import; override after)

    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=_NOISY_MODULES)
    warnings.filterwarnings("ignore", message=r".*(LeafSpec|treespec).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*val_check_interval.*")


_KEY = re.compile(r'Parser key "([^"]+)":')


def condense_parser_error(message: str) -> str:
    """One line from jsonargparse's nested error: the flag and what went wrong.

    ``Parser key "data": ... Parser key "image_size": Expected a <class 'int'>.
    Got value: abc`` becomes ``--data.image_size: expected a int. Got value: abc``.
    """
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    if not lines:
        return "invalid arguments"
    keys: list[str] = []
    nested: str | None = None
    detail: str | None = None
    for line in lines:
        key = _KEY.search(line)
        if key:
            keys.append(key.group(1))
            continue
        if line.startswith("Given value"):
            found = re.search(r"NestedArg\(key='([^']+)'", line)
            nested = found.group(1) if found else nested
            continue
        if detail is None and not line.startswith(_UNION_NOISE):
            detail = line[2:] if line.startswith("- ") else line
    if not keys:
        return lines[0]
    if nested is not None and nested not in keys:
        keys.append(nested)
    detail = re.sub(r"<class '([\w.]+)'>", r"\1", detail or lines[-1])
    flag = "--" + ".".join(k for k in keys if k != "init_args")
    return f"{flag}: {detail[:1].lower()}{detail[1:]}"


_UNION_NOISE = (
    "Does not validate against any of the Union",
    "Subtypes:",
    "Errors:",
    "- Problem with given class_path",
    "- Expected a <class 'NoneType'>",
)


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    if type(exc).__name__ == "ArgumentError":
        return condense_parser_error(text)
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, (UserError, FileNotFoundError, ValueError, TypeError)):
        return first
    return f"{type(exc).__name__}: {first}"


def report_error(prog: str, exc: BaseException, verbose: bool) -> int:
    """Print ``exc`` for the user (traceback when ``verbose``); returns the exit status."""
    if verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    else:
        print(f"{prog}: error: {_message(exc)}", file=sys.stderr)
        if not isinstance(exc, UserError) and type(exc).__name__ != "ArgumentError":
            print(_HINT, file=sys.stderr)
    sys.stderr.flush()
    return 2 if isinstance(exc, UserError) or type(exc).__name__ == "ArgumentError" else 1


def run_reporting_errors(prog: str, verbose: bool, run: Callable[[], int | None]) -> int:
    """Run ``run()`` and turn any exception into a short report and a non-zero status."""
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # argparse's own errors and --help
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        return report_error(prog, exc, verbose)
