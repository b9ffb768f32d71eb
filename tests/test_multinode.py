"""Two nodes of one process each, simulated on localhost: ``autotimm fit`` with
``--trainer.num_nodes 2`` (DDP over gloo), each node with its own ``NODE_RANK``,
working folder and ``default_root_dir``, as on two machines.

Checks: both nodes finish; the validation metric the run logs (``val/map*`` and
``val/mar*``, computed on both nodes, each image once, synchronised) equals a
single-process ``autotimm validate`` of the final checkpoint on the same data;
only rank 0 writes files (checkpoints, metrics files, PNGs): node 1's folder
stays empty. (The validation losses are not compared: each batch's loss is
normalised by its own positives, so they depend on how the images are batched,
which differs between one process and two.)

To make the metric non-trivial after a few steps, :class:`FixedBoxes` makes every
point predict an 18x18 box (the class scores are the model's own).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_args import CPU_TRAINER_ARGS, TINY_MODEL_ARGS, child_env, coco_data_args
from lightning.pytorch.callbacks import Callback

from autotimm.data.shapes import write_shapes_coco

BOX_HALF_SIZE = 9.0


class FixedBoxes(Callback):
    """Every point's regression output becomes ``BOX_HALF_SIZE`` pixels on each side
    (kept in the graph with a zero gradient, so DDP sees every parameter used)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        run = pl_module._run_model

        def fixed(images: Any) -> Any:
            cls, reg, ctr = run(images)
            return cls, [r * 0 + BOX_HALF_SIZE for r in reg], ctr

        pl_module._run_model = fixed


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return write_shapes_coco(
        tmp_path_factory.mktemp("shapes"),
        num_train=8,
        num_val=8,
        image_size=64,
        min_size=12,
        max_size=30,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _common(coco_root: Path) -> list[str]:
    return [
        *TINY_MODEL_ARGS,
        "--model.score_thresh",
        "0.0",
        *coco_data_args(coco_root),
        *CPU_TRAINER_ARGS,
        "--trainer.callbacks+=test_multinode.FixedBoxes",
    ]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_two_nodes_match_one_process_and_only_rank_0_writes(coco_root, tmp_path) -> None:
    port = str(_free_port())
    nodes = []
    for rank in (0, 1):
        folder = tmp_path / f"node{rank}"
        folder.mkdir()
        cmd = [
            sys.executable,
            "-m",
            "autotimm",
            "fit",
            *_common(coco_root),
            "--model.lr",
            "0.001",
            "--trainer.strategy",
            "ddp",
            "--trainer.num_nodes",
            "2",
            "--trainer.devices",
            "1",
            "--trainer.max_epochs",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.default_root_dir",
            "runs",
            "--max_images",
            "2",
        ]
        env = child_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank))
        nodes.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=folder
            )
        )
    try:
        outputs = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
        assert "strides do not match" not in err, err[-3000:]  # DDP and channels-last weights

    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    assert _files(node1) == []
    written = _files(node0)
    [version] = {Path(f).parts[2] for f in written}  # runs/lightning_logs/version_0/...
    for name in ("metrics.json", "metrics.csv", "checkpoints/last.ckpt"):
        assert f"runs/lightning_logs/{version}/{name}" in written, written
    assert sum(f.endswith(".png") for f in written) == 2
    assert sum(f.endswith(".ckpt") for f in written) == 2  # best and last
    [record] = json.loads((node0 / "runs/lightning_logs" / version / "metrics.json").read_text())
    assert record["step"] == 2  # 8 images, 2 per batch, on 2 processes

    last = node0 / "runs/lightning_logs" / version / "checkpoints/last.ckpt"
    single = tmp_path / "single"
    single.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "autotimm",
        "validate",
        *_common(coco_root),
        "--ckpt_path",
        str(last),
        "--trainer.devices",
        "1",
        "--trainer.logger",
        "false",
        "--output_dir",
        str(single),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=child_env(), cwd=single, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = json.loads((single / "validate_metrics.json").read_text())
    assert reference["val/map_50"] > 0, "the check needs detections that match"
    metric_keys = {k for k in reference if k.startswith(("val/map", "val/mar"))}
    logged = {k: v for k, v in record.items() if k in metric_keys}
    assert logged.keys() == metric_keys and "val/map" in logged
    for key, value in logged.items():
        assert value == pytest.approx(reference[key], abs=2e-6), key  # metrics.json: 6 digits
