"""The user's workflow end to end: train a few steps on a CSV dataset of JPEGs, then
predict on a folder of JPEGs with the command that ``fit`` printed."""

from __future__ import annotations

import csv
import getpass
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autotimm.cli import main

CLASSES = ("cat", "dog")
#: (width, height) of the generated images: larger than the 64-pixel network input.
SIZES = [(160, 96), (96, 128), (120, 120), (200, 100)]


def _write_dataset(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(8):
        w, h = SIZES[i % len(SIZES)]
        arr = rng.integers(90, 160, (h, w, 3), dtype=np.uint8)
        for k in range(2):
            bw, bh = int(rng.integers(20, w // 2)), int(rng.integers(20, h // 2))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            label = CLASSES[(i + k) % 2]
            arr[y0 : y0 + bh, x0 : x0 + bw] = (230, 40, 40) if label == "cat" else (40, 40, 230)
            rows.append([f"img_{i}.jpg", x0, y0, x0 + bw, y0 + bh, label])
        Image.fromarray(arr).save(images / f"img_{i}.jpg", quality=95)
    header = ["image_path", "x_min", "y_min", "x_max", "y_max", "label"]
    for name, part in (("train.csv", rows[:12]), ("val.csv", rows[12:])):
        with (images / name).open("w", newline="") as f:
            csv.writer(f).writerows([header, *part])
    return {"train": images / "train.csv", "val": images / "val.csv", "images": images}


def _fit_args(data: dict[str, Path]) -> list[str]:
    return [
        "fit",
        "--data.train_csv", str(data["train"]),
        "--data.val_csv", str(data["val"]),
        "--data.image_size", "64",
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--model.backbone", "test_byobnet",
        "--model.backbone.pretrained", "false",
        "--model.fpn_channels", "16",
        "--model.head_num_convs", "1",
        "--model.score_thresh", "0.0",
        "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
        "--max_images", "1",
    ]  # fmt: skip


def test_train_on_csv_then_predict_a_folder_with_the_printed_command(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    data = _write_dataset(tmp_path / "data")
    assert main(_fit_args(data)) == 0
    fit_out = capsys.readouterr().out
    [line] = [ln for ln in fit_out.splitlines() if ln.startswith("Predict with: ")]
    command = shlex.split(line.removeprefix("Predict with: "))
    assert command[:2] == ["autotimm", "predict"]
    args = dict(zip(command[2::2], command[3::2], strict=True))
    assert Path(args["--source"]).resolve() == data["images"].resolve(), "the right data"
    ckpt = Path(args["--ckpt_path"])
    run_dir = ckpt.parent.parent
    assert Path(args["--output_dir"]).parent == run_dir, "the run's own folder"

    # checkpoints carry their data; no OS user name in files
    stored = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert stored["autotimm_data"]["class_names"] == list(CLASSES)
    assert stored["autotimm_data"]["image_size"] == 64
    assert stored["hyper_parameters"]["username"] == ""
    user = getpass.getuser()
    if len(user) >= 3:
        for path in run_dir.rglob("*.yaml"):
            assert user not in path.read_text(), path

    assert main(command[1:]) == 0
    pred_out = capsys.readouterr().out
    out_dir = Path(args["--output_dir"])
    results_path = out_dir / "results.json"
    assert str(results_path) in pred_out and results_path.is_file()
    assert str(out_dir / "images") in pred_out
    assert len(list((out_dir / "images").glob("*.png"))) == 8
    records = json.loads(results_path.read_text())
    assert {Path(r["file_name"]).name for r in records} == {f"img_{i}.jpg" for i in range(8)}
    assert {r["category_name"] for r in records} <= set(CLASSES)

    # boxes in original pixels: inside each image, and equal to model.predict on the file
    from autotimm import ObjectDetector

    model = ObjectDetector.load_from_checkpoint(ckpt, map_location="cpu")
    paths = [data["images"] / f"img_{i}.jpg" for i in range(8)]
    detections = model.predict([str(p) for p in paths])  # the batch the command ran
    for path, (w, h), det in zip(paths, SIZES * 2, detections, strict=True):
        mine = [r for r in records if r["file_name"] == str(path)]
        assert mine
        for r in mine:
            x, y, bw, bh = r["bbox"]
            assert -1e-3 <= x and -1e-3 <= y and x + bw <= w + 1e-3 and y + bh <= h + 1e-3
        assert det["label_names"] == [r["category_name"] for r in mine]
        xywh = torch.cat([det["boxes"][:, :2], det["boxes"][:, 2:] - det["boxes"][:, :2]], 1)
        torch.testing.assert_close(torch.tensor([r["bbox"] for r in mine]), xywh, atol=2e-3, rtol=0)
    assert (Path.cwd() / "autotimm_runs").is_dir()

    # the checkpoint knows its data: validate with no data flag, from another folder
    assert stored["DetectionDataModule"]["settings"]["val_csv"] == str(data["val"].resolve())
    ckpt = ckpt.resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["validate", "--ckpt_path", str(ckpt), "--trainer.logger", "false",
                 "--trainer.enable_progress_bar", "false", "--output_dir", "val"]) == 0
    captured = capsys.readouterr()
    assert f"--data.val_csv {data['val'].resolve()}" in captured.err
    metrics = json.loads((elsewhere / "val" / "validate_metrics.json").read_text())
    assert "val/map" in metrics

    # unreadable files in a folder are skipped and named; the rest is predicted
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "a.jpg").write_bytes((data["images"] / "img_0.jpg").read_bytes())
    (hostile / "b.jpg").write_bytes((data["images"] / "img_1.jpg").read_bytes()[:300])
    (hostile / "c.png").write_text("not an image")
    args = ["predict", "--ckpt_path", str(ckpt), "--source", str(hostile), "--output_dir", "h"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "2 unreadable files skipped" in captured.out
    assert str(hostile / "b.jpg") in captured.err and str(hostile / "c.png") in captured.err
    records = json.loads((elsewhere / "h" / "results.json").read_text())
    assert {r["file_name"] for r in records} == {str(hostile / "a.jpg")}
    assert {r["image_id"] for r in records} == {1}
    # a single unreadable file is an error
    assert main([*args[:4], str(hostile / "c.png"), *args[5:]]) == 2
    assert "no readable image" in capsys.readouterr().err


def test_own_data_gets_a_practitioners_configuration(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    data = _write_dataset(tmp_path / "data")
    with pytest.raises(SystemExit):
        from autotimm.cli import cli_main

        cli_main(["fit", "--data.train_csv", str(data["train"]), "--print_config"])
    own = capsys.readouterr().out
    assert "model_name: resnet50" in own and "pretrained: true" in own
    assert "image_size: 512" in own and "fpn_channels: 256" in own
    with pytest.raises(SystemExit):
        from autotimm.cli import cli_main

        cli_main(["fit", "--print_config"])
    demo = capsys.readouterr().out
    assert "model_name: resnet18" in demo and "image_size: 128" in demo
