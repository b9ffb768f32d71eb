"""``autotimm evaluate GT.json RESULTS.json``: COCO bbox evaluation of a result file.

Prints pycocotools' 12-line summary (or, with ``--json``, the statistics as a
JSON object) and optionally writes a precision-recall PNG.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Sequence

__all__ = ["STAT_NAMES", "build_parser", "main"]

STAT_NAMES = [
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
]


def build_parser(prog: str = "autotimm evaluate") -> argparse.ArgumentParser:
    """The command's argument parser (also usable as a subcommand parser)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="COCO bbox evaluation (pycocotools-exact) of a detection result file.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the command's arguments to ``parser``."""
    parser.add_argument("ground_truth", help="COCO ground-truth JSON (instances_*.json)")
    parser.add_argument("results", help="COCO results JSON (list of detections)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument(
        "--per-class",
        action="store_true",
        help="also report AP per category (a table, or a per_class_AP entry with --json)",
    )
    parser.add_argument("--plot", metavar="PNG", help="write a precision-recall curve to PNG")
    parser.add_argument("--verbose", action="store_true", help="print pycocotools' progress lines")


def _per_class_ap(ev: object) -> dict[str, float]:
    import numpy as np

    precision = ev.eval["precision"]  # type: ignore[attr-defined]
    p = ev.params  # type: ignore[attr-defined]
    m = list(p.maxDets).index(100) if 100 in p.maxDets else len(p.maxDets) - 1
    names = {c["id"]: c.get("name", str(c["id"])) for c in ev.cocoGt._categories}  # type: ignore[attr-defined]
    out = {}
    for k, cat in enumerate(p.catIds):
        s = precision[:, :, k, 0, m]
        s = s[s > -1]
        out[str(names.get(cat, cat))] = float(np.mean(s)) if s.size else -1.0
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status (0 ok, 1 unreadable input)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Runs the command on parsed arguments."""
    from autotimm.metrics.coco import COCO, COCOeval, format_summary

    chatter = (
        contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO())
    )
    try:
        with chatter:
            gt = COCO(args.ground_truth)
            dt = gt.loadRes(args.results)
            ev = COCOeval(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    except (OSError, ValueError) as err:
        print(f"autotimm evaluate: error: {err}", file=sys.stderr)
        return 1
    stats = [float(s) for s in ev.stats]
    if args.json:
        out: dict[str, object] = dict(zip(STAT_NAMES, stats, strict=True))
        out["stats"] = stats
        if args.per_class:
            out["per_class_AP"] = _per_class_ap(ev)
        print(json.dumps(out, indent=2))
    else:
        for line in format_summary(stats, ev.params):
            print(line)
        if args.per_class:
            print("\n" + _per_class_text(ev))
    if args.plot:
        from autotimm.metrics.plot import plot_precision_recall

        try:
            plot_precision_recall(ev, args.plot)
        except ImportError as err:
            print(f"autotimm evaluate: error: {err}", file=sys.stderr)
            return 1
        # with --json, stdout stays one JSON document
        print(f"precision-recall curves: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _per_class_text(ev: object) -> str:
    """The per-class AP table (AP, AP50, AP75 at area "all", maxDets 100)."""
    from autotimm.reports.per_class import per_class_ap, per_class_table

    p = ev.params  # type: ignore[attr-defined]
    names = {c["id"]: c.get("name", str(c["id"])) for c in ev.cocoGt._categories}  # type: ignore[attr-defined]
    m = list(p.maxDets).index(100) if 100 in p.maxDets else len(p.maxDets) - 1
    precision = ev.eval["precision"][..., m : m + 1]  # type: ignore[attr-defined]
    rows = per_class_ap(precision, p.iouThrs, [str(names.get(c, c)) for c in p.catIds])
    return per_class_table(rows)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
