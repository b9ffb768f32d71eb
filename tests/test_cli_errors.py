"""Catalogue of user errors of the ``autotimm`` command.

Each case exits non-zero within seconds, prints at most 3 lines on stderr that
name the fix, and leaves no run folder behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autotimm.cli import main
from autotimm.data.shapes import write_shapes_coco

MAX_SECONDS = 60.0  # generous for a loaded 2-core machine; typical runs take 1-5 s


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    coco = write_shapes_coco(
        root / "coco", num_train=4, num_val=2, image_size=64, min_size=10, max_size=30
    )
    bad = root / "bad_json"
    (bad / "annotations").mkdir(parents=True)
    (bad / "train2017").mkdir()
    (bad / "annotations" / "instances_train2017.json").write_text("{not json")
    empty = root / "empty"
    empty.mkdir()
    fake_ckpt = root / "fake.ckpt"
    fake_ckpt.write_bytes(b"")
    return {"coco": coco, "bad": bad, "empty": empty, "fake_ckpt": fake_ckpt}


def _cases(f: dict[str, Path]) -> list[tuple[str, list[str], str]]:
    """(id, argv, a word of the fix that stderr must name)."""
    small = [
        "--model.backbone",
        "resnet18",
        "--model.backbone.pretrained",
        "false",
        "--model.fpn_channels",
        "8",
        "--data.num_workers",
        "0",
    ]
    return [
        ("unknown command", ["fitt"], "expected one of"),
        ("data_dir missing", ["fit", "--data.data_dir", "/no/such/dir"], "--data.data_dir"),
        ("csv missing", ["fit", "--data.train_csv", "/no/such.csv"], "--data.train_csv"),
        ("bad json", ["fit", "--data.data_dir", str(f["bad"]), *small], "instances_train2017"),
        ("bad flag value", ["fit", "--data.image_size", "abc"], "--data.image_size"),
        ("unknown flag", ["fit", "--data.imagesize", "64"], "imagesize"),
        (
            "num_classes disagrees",
            ["fit", "--data.data_dir", str(f["coco"]), "--model.num_classes", "5", *small],
            "4 classes",
        ),
        (
            "num_classes zero",
            ["fit", "--data.data_dir", str(f["coco"]), "--model.num_classes", "0", *small],
            "positive",
        ),
        ("validate without ckpt", ["validate"], "--ckpt_path"),
        ("predict without ckpt", ["predict", "--data.data_dir", str(f["coco"])], "--ckpt_path"),
        ("missing ckpt", ["test", "--ckpt_path", "/no/such.ckpt"], "--ckpt_path"),
        ("resume from missing ckpt", ["fit", "--ckpt_path", "/no/such.ckpt"], "--ckpt_path"),
        ("source without ckpt", ["predict", "--source", str(f["empty"])], "--ckpt_path"),
        (
            "source without images",
            ["predict", "--source", str(f["empty"]), "--ckpt_path", str(f["fake_ckpt"])],
            "no image files",
        ),
        (
            "no network for pretrained weights",
            ["fit", "--data.data_dir", str(f["coco"]), "--model.backbone", "resnet18"],
            "--model.backbone.pretrained false",
        ),
        ("evaluate missing file", ["evaluate", "/no/gt.json", "/no/dt.json"], "/no/gt.json"),
    ]


CASE_IDS = [c[0] for c in _cases({k: Path("x") for k in ("coco", "bad", "empty", "fake_ckpt")})]


@pytest.fixture
def offline(monkeypatch, tmp_path) -> None:
    """No cached weights and no network for pretrained weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("AUTOTIMM_VERBOSE", raising=False)


@pytest.mark.parametrize("case", CASE_IDS)
def test_user_error_is_short(case, files, offline, tmp_path, monkeypatch, capsys) -> None:
    _, argv, fix = next(c for c in _cases(files) if c[0] == case)
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, err
    assert 1 <= len(lines) <= 3, err
    assert fix in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "autotimm_runs").exists(), "a user error leaves no run folder"
    assert elapsed < MAX_SECONDS


def test_verbose_shows_the_traceback(files, offline, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["test", "--ckpt_path", "/no/such.ckpt", "--verbose"]) != 0
    assert "Traceback" in capsys.readouterr().err


def test_exit_status_of_the_process(files, tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AUTOTIMM_VERBOSE", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotimm",
            "predict",
            "--ckpt_path",
            "/no/such.ckpt",
            "--source",
            str(files["empty"]),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
    assert not (tmp_path / "autotimm_runs").exists()
    json.dumps(proc.stderr)  # plain text
