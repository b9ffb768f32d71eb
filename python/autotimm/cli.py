"""The ``autotimm`` command.

Usage::

    autotimm fit                                   # the demo: FCOS on the embedded shapes
    autotimm fit --data.train_csv train.csv --data.val_csv val.csv
    autotimm fit --data.data_dir /data/coco --model.backbone resnet50
    autotimm validate|test --ckpt_path best.ckpt [--data.* ...]
    autotimm predict --ckpt_path best.ckpt --source IMAGES [--output_dir out/]
    autotimm evaluate GT.json RESULTS.json [--per-class] [--plot pr.png]
    autotimm export --ckpt_path best.ckpt ...
    autotimm --version

This module only parses the command name and dispatches, so ``--help``,
``--version`` and ``evaluate`` start without importing torch or Lightning. The
training commands live in :mod:`autotimm.commands.lightning_cli`, ``predict
--source`` in :mod:`autotimm.commands.predict_source`. User errors print one or
two lines naming the fix and exit non-zero; ``--verbose`` or
``AUTOTIMM_VERBOSE=1`` shows the traceback and third-party notices.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["COMMANDS", "cli_main", "main", "usage"]

#: Commands and their one-line descriptions (``autotimm --help``).
COMMANDS: dict[str, str] = {
    "fit": "train a detector (no data option: the embedded demo; see --print_config)",
    "validate": "evaluate a checkpoint on the validation set (per-class AP, confusion matrix)",
    "test": "evaluate a checkpoint on the test set (same report as validate)",
    "predict": "detect objects in image files (--source FILE|FOLDER|GLOB) or a labelled split",
    "evaluate": "COCO bbox evaluation of a results JSON against a ground-truth JSON",
    "export": "export a checkpoint to ONNX or TorchScript",
}
_LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
#: Names re-exported lazily from :mod:`autotimm.commands` (they import Lightning).
_LAZY = {
    "AutoTimmCLI": "autotimm.commands.lightning_cli",
    "CocoResultsWriter": "autotimm.commands.callbacks",
    "MetricsFileWriter": "autotimm.commands.callbacks",
    "draw_validation_images": "autotimm.commands.callbacks",
}


def usage() -> str:
    """The text of ``autotimm --help``."""
    width = max(len(c) for c in COMMANDS)
    lines = [
        "usage: autotimm [--version] [--help] COMMAND [options]",
        "",
        "Anchor-free object detection (timm backbone, FPN, FCOS/YOLOX head) with Lightning.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
        "",
        "`autotimm COMMAND --help` lists a command's options (for fit/validate/test/predict:",
        "the trainer, model and data options). Add --verbose (or set AUTOTIMM_VERBOSE=1) for",
        "full tracebacks and third-party notices.",
    ]
    return "\n".join(lines)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autotimm.cli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def cli_main(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """Build (and by default run) the Lightning CLI on ``args`` (``--model.backbone NAME``
    composed with the backbone's fields); see :func:`autotimm.commands.lightning_cli.cli_main`."""
    from autotimm.commands.arguments import compose_backbone_flags
    from autotimm.commands.lightning_cli import cli_main as lightning_main

    argv = list(sys.argv[1:] if args is None else args)
    return lightning_main(compose_backbone_flags(argv), run=run)


def _is_help(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def _lightning(argv: list[str]) -> int:
    if _is_help(argv[1:2]) or (_is_help(argv) and len(argv) == 2):
        if argv[0] == "predict":  # image files first: the common case
            from autotimm.commands.predict_source import build_parser

            print(build_parser().format_help())
            print("=== predict on a labelled split (no --source) ===", flush=True)
        # Lightning's help, then the model's and the data module's options
        for extra, title in (
            ([], None),
            (["--model.help", "autotimm.ObjectDetector"], "model options (--model.NAME VALUE)"),
            (["--data.help", "autotimm.DetectionDataModule"], "data options (--data.NAME VALUE)"),
        ):
            if title:
                print(f"\n=== {title} ===", flush=True)
            try:
                cli_main([argv[0], *extra] if extra else argv, run=True)
            except SystemExit as exc:
                if exc.code not in (0, None):
                    return int(exc.code) if isinstance(exc.code, int) else 1
        return 0
    cli_main(argv)
    return 0


def _has_source(argv: Sequence[str]) -> bool:
    return any(a == "--source" or a.startswith("--source=") for a in argv)


def _export(argv: list[str], verbose: bool) -> int:
    from autotimm.commands.errors import UserError, run_reporting_errors

    def run() -> int:
        try:
            module = importlib.import_module("autotimm.export_cli")
        except ModuleNotFoundError as err:
            if err.name != "autotimm.export_cli":
                raise
            raise UserError("export is not available in this installation of autotimm") from None
        if hasattr(module, "main"):
            return int(module.main(argv) or 0)
        import argparse

        class OneLineErrors(argparse.ArgumentParser):
            def error(self, message: str) -> Any:  # type: ignore[override]
                raise UserError(f"{message} (see autotimm export --help)")

        parser = OneLineErrors(prog="autotimm")
        module.add_parser(parser.add_subparsers(dest="command", required=True))
        return int(module.run(parser.parse_args(["export", *argv])) or 0)

    return run_reporting_errors("autotimm export", verbose, run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autotimm`` console script and ``python -m autotimm``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("--version", "-V", "version"):
        from autotimm import __version__

        print(f"autotimm {__version__}")
        return 0
    command = args[0]
    if command == "evaluate":
        from autotimm.metrics.evaluate_cli import main as evaluate_main

        return int(evaluate_main(args[1:]) or 0)
    if command not in COMMANDS:
        print(
            f"autotimm: error: unknown command {command!r}; expected one of "
            f"{', '.join(COMMANDS)} (see autotimm --help)",
            file=sys.stderr,
        )
        return 2
    from autotimm.commands.errors import pop_verbose, quiet_third_party, run_reporting_errors

    verbose, args = pop_verbose(args)
    if command == "export":
        if not _is_help(args[1:]):  # the export's help needs neither torch nor Lightning
            quiet_third_party(verbose)
        return _export(args[1:], verbose)
    quiet_third_party(verbose)
    if command == "predict" and _has_source(args):
        from autotimm.commands.predict_source import main as predict_main

        return run_reporting_errors("autotimm predict", verbose, lambda: predict_main(args[1:]))
    return run_reporting_errors(f"autotimm {command}", verbose, lambda: _lightning(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
