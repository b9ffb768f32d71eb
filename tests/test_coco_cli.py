"""``autotimm evaluate`` (evaluate_cli.main) and the precision-recall plot."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from autotimm.metrics import COCO, COCOeval
from autotimm.metrics.evaluate_cli import STAT_NAMES, main


def _write(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    images = [{"id": i} for i in range(1, 21)]
    anns, results = [], []
    for img in images:
        for _ in range(int(rng.integers(1, 5))):
            box = [
                *rng.uniform(0, 200, 2).round(1).tolist(),
                *rng.uniform(5, 120, 2).round(1).tolist(),
            ]
            cat = int(rng.integers(1, 4))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": cat,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
            noisy = (np.array(box) + rng.normal(0, 3, 4)).round(2).tolist()
            results.append(
                {
                    "image_id": img["id"],
                    "category_id": cat,
                    "bbox": noisy,
                    "score": float(rng.random()),
                }
            )
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, 4)]
    gt, dt = tmp_path / "gt.json", tmp_path / "dt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    dt.write_text(json.dumps(results))
    return gt, dt


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_prints_pycocotools_summary(tmp_path: Path) -> None:
    gt, dt = _write(tmp_path)
    code, out, _ = _run([str(gt), str(dt)])
    assert code == 0
    lines = out.rstrip("\n").split("\n")
    assert len(lines) == 12
    assert lines[0].startswith(
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"
    )
    pycocotools = pytest.importorskip("pycocotools")
    del pycocotools
    from pycocotools.coco import COCO as RefCOCO
    from pycocotools.cocoeval import COCOeval as RefCOCOeval

    ref_out = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = RefCOCO(str(gt))
        ref = RefCOCOeval(ref_gt, ref_gt.loadRes(str(dt)), "bbox")
        ref.evaluate()
        ref.accumulate()
    with contextlib.redirect_stdout(ref_out):
        ref.summarize()
    assert out == ref_out.getvalue()


def test_json_output_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    gt, dt = _write(tmp_path)
    png = tmp_path / "pr.png"
    code, out, _ = _run([str(gt), str(dt), "--json", "--per-class", "--plot", str(png)])
    assert code == 0
    data = json.loads(out)
    assert list(data)[:12] == STAT_NAMES
    assert len(data["stats"]) == 12
    assert set(data["per_class_AP"]) == {"c1", "c2", "c3"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_class_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from autotimm.metrics.plot import plot_precision_recall

    gt, dt = _write(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(gt)
        ev = COCOeval(g, g.loadRes(str(dt)), "bbox")
        ev.evaluate()
        ev.accumulate()
    fig = plot_precision_recall(ev, tmp_path / "cls.png", per_class=True, iou_thr=None)
    assert len(fig.axes[0].lines) == 3
    with pytest.raises(ValueError):
        plot_precision_recall(COCOeval(g, g, "bbox"))


def test_errors_exit_with_status_1(tmp_path: Path) -> None:
    gt, _ = _write(tmp_path)
    code, _, err = _run([str(gt), str(tmp_path / "missing.json")])
    assert code == 1
    assert "missing.json" in err
    bad = tmp_path / "bad.json"
    bad.write_text("[{]")
    code, _, err = _run([str(gt), str(bad)])
    assert code == 1
    assert "bad.json" in err


def test_per_class_and_plot_in_text_mode(tmp_path: Path) -> None:
    gt, dt = _write(tmp_path)
    png = tmp_path / "pr.png"
    code, out, err = _run([str(gt), str(dt), "--per-class", "--plot", str(png)])
    assert code == 0 and not err
    lines = out.rstrip("\n").split("\n")
    assert lines[0].startswith(" Average Precision")
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == ["class", "boxes", "AP", "AP50", "AP75"]
    assert [row.split()[0] for row in table[2:5]] == ["c1", "c2", "c3"]
    assert float(lines[0].rsplit("=", 1)[1]) == pytest.approx(
        np.mean([float(row.split()[1]) for row in table[2:5]]), abs=1e-3
    )
    assert out.rstrip().endswith(f"precision-recall curves: {png}") and png.is_file()
