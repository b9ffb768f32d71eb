"""The ``autotimm`` command end to end: fit (fast_dev_run and a short run), predict,
evaluate, validate, and a two-process DDP validation that matches one process.

Everything runs on a tiny COCO folder of the embedded shapes (64-pixel images)
with timm's ``test_byobnet`` backbone, so the file stays within a few minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_args import TINY_MODEL_ARGS, coco_data_args

from autotimm.cli import main
from autotimm.data.shapes import write_shapes_coco

CATEGORY_IDS = [3, 7, 11, 20]


def _model_args() -> list[str]:
    return [*TINY_MODEL_ARGS, "--model.score_thresh", "0.0", "--model.lr", "0.01"]


def _data_args(root: Path) -> list[str]:
    return coco_data_args(root, batch_size=4)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_coco(
        root,
        num_train=8,
        num_val=8,
        image_size=64,
        min_size=10,
        max_size=30,
        category_ids=CATEGORY_IDS,
    )


@pytest.fixture(scope="module")
def trained(coco_root, tmp_path_factory) -> dict:
    """One short ``fit`` (2 epochs of 2 steps) shared by the tests below."""
    out = tmp_path_factory.mktemp("fit")
    cwd = os.getcwd()
    os.chdir(out)
    try:
        main(
            [
                "fit",
                *_model_args(),
                *_data_args(coco_root),
                "--trainer.max_epochs",
                "2",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.default_root_dir",
                str(out / "runs"),
                "--max_images",
                "2",
            ]
        )
    finally:
        os.chdir(cwd)
    ckpts = sorted(p for p in (out / "runs").rglob("*.ckpt") if p.name != "last.ckpt")
    return {"out": out, "ckpts": ckpts}


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("autotimm ")


def test_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for sub in ("fit", "validate", "test", "predict", "evaluate", "export"):
        assert f"\n  {sub} " in text


def test_fit_help_shows_model_and_data_options(capsys) -> None:
    assert main(["fit", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--trainer.max_epochs", "--model.fpn_channels", "--data.train_csv"):
        assert option in text


def test_fit_fast_dev_run_with_config_file(coco_root, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "detection.yaml").write_text(
        "model:\n"
        "  class_path: autotimm.ObjectDetector\n"
        "  init_args:\n"
        "    backbone: {model_name: test_byobnet, pretrained: false}\n"
        "    fpn_channels: 16\n"
        "    head_num_convs: 1\n"
        "    compile_model: false\n"
        "data:\n"
        "  class_path: autotimm.DetectionDataModule\n"
        f"  init_args: {{data_dir: {coco_root}, image_size: 64, batch_size: 4, num_workers: 0}}\n"
        "trainer:\n"
        "  max_epochs: 3\n"
    )
    main(
        [
            "fit",
            "--config",
            "detection.yaml",
            "--trainer.fast_dev_run",
            "true",
            "--max_images",
            "1",
        ]
    )
    text = capsys.readouterr().out
    assert "Training finished" in text and "metrics:" in text
    assert (tmp_path / "autotimm_runs" / "metrics.json").is_file()
    assert len(list((tmp_path / "autotimm_runs" / "predictions").glob("*.png"))) == 1


def test_fit_writes_checkpoint_metrics_and_pngs(trained) -> None:
    runs = trained["out"] / "runs"
    assert len(trained["ckpts"]) == 1  # best by val/map, save_top_k=1 (besides last.ckpt)
    [version] = list((runs / "lightning_logs").iterdir())
    records = json.loads((version / "metrics.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1]
    assert all("val/map" in r and "val/map_50" in r for r in records)
    assert (version / "metrics.csv").is_file()
    assert len(list((version / "predictions").glob("val_*.png"))) == 2


def test_predict_writes_coco_results(trained, coco_root, tmp_path) -> None:
    out = tmp_path / "pred"
    main(
        [
            "predict",
            *_model_args(),
            *_data_args(coco_root),
            "--ckpt_path",
            str(trained["ckpts"][0]),
            "--trainer.logger",
            "false",
            "--trainer.enable_progress_bar",
            "false",
            "--output_dir",
            str(out),
            "--max_images",
            "3",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results, "a score_thresh of 0 gives detections"
    gt = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    assert {r["image_id"] for r in results} <= {img["id"] for img in gt["images"]}
    assert {r["category_id"] for r in results} <= set(CATEGORY_IDS)
    for r in results[:50]:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= 64.01 and y + h <= 64.01
    assert len(list((out / "images").glob("*.png"))) == 3

    pytest.importorskip("autotimm.metrics.evaluate_cli")
    gt_path = coco_root / "annotations" / "instances_val2017.json"
    code = main(["evaluate", str(gt_path), str(out / "results.json"), "--json"])
    assert code == 0


def state_path(trained: dict) -> Path:
    return trained["ckpts"][0]


def _validate_cmd(root: Path, ckpt: Path, out: Path, ddp: bool) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "autotimm",
        "validate",
        *_model_args(),
        *_data_args(root),
        "--ckpt_path",
        str(ckpt),
        "--trainer.logger",
        "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.accelerator",
        "cpu",
        "--output_dir",
        str(out),
    ]
    if ddp:
        cmd += ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    else:
        cmd += ["--trainer.devices", "1"]
    return cmd


def test_ddp_two_processes_match_one(trained, coco_root, tmp_path) -> None:
    """Validation on 2 gloo processes (each image seen once) gives the same metrics."""
    import torch

    # A checkpoint whose boxes overlap the objects: every point predicts an 18x18
    # box (zero regression weights, bias 9 px), scored by the trained weights.
    from autotimm import ObjectDetector

    state = torch.load(trained["ckpts"][0], map_location="cpu", weights_only=False)
    sd = state["state_dict"]
    sd["head.reg_pred.weight"].zero_()
    sd["head.reg_pred.bias"].fill_(9.0)
    # a head that multiplies distances by the level's stride gets 1/stride scales
    head_strides = getattr(ObjectDetector.load_from_checkpoint(state_path(trained)).head,
                           "strides", None)  # fmt: skip
    for level, stride in enumerate(head_strides or ()):
        sd[f"head.scales.{level}.scale"].fill_(1.0 / stride)
    ckpt = tmp_path / "boxes.ckpt"
    torch.save(state, ckpt)
    env = {**os.environ, "AUTOTIMM_NO_BANNER": "1", "OMP_NUM_THREADS": "1"}
    results = {}
    for ddp in (False, True):
        out = tmp_path / ("ddp" if ddp else "single")
        proc = subprocess.run(
            _validate_cmd(coco_root, ckpt, out, ddp),
            capture_output=True,
            text=True,
            env=env,
            timeout=400,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[ddp] = json.loads((out / "validate_metrics.json").read_text())
    single, ddp = results[False], results[True]
    assert "val/map" in single and single.keys() == ddp.keys()
    assert single["val/map_50"] > 0, "the check needs detections that match"
    # the metric (each image once, synchronised) must agree; mean losses depend on sharding
    for key in [k for k in single if k.startswith(("val/map", "val/mar"))]:
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key
