"""Checks of a parsed command before anything is built or written.

Each failure raises :class:`~autotimm.commands.errors.UserError` with one line
that names the flag and the fix, so a mistake never leaves a run folder behind.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from autotimm.commands.defaults import DEMO_DATA_DIR
from autotimm.commands.errors import UserError

__all__ = [
    "check_checkpoint",
    "check_data_paths",
    "check_num_classes",
    "check_pretrained_reachable",
]

#: Values of ``--ckpt_path`` that Lightning resolves itself during ``fit``.
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")
#: Seconds to wait for the weights' host before reporting "no network".
NETWORK_TIMEOUT_S = 3.0


def check_checkpoint(subcommand: str, ckpt_path: Any) -> None:
    """``predict``/``validate``/``test`` need a checkpoint file; ``fit`` one that exists."""
    if ckpt_path is None or str(ckpt_path) == "":
        if subcommand in ("predict", "validate", "test"):
            raise UserError(
                f"{subcommand} needs a trained model: add --ckpt_path PATH.ckpt "
                "(printed at the end of `autotimm fit`)"
            )
        return
    text = str(ckpt_path)
    if subcommand == "fit" and text in CKPT_KEYWORDS:
        return
    path = Path(text)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise UserError(f"--ckpt_path {text}: {what}; give the path of a .ckpt file")


def _exists(flag: str, value: Any, kind: str = "file") -> None:
    if value is None:
        return
    path = Path(str(value))
    ok = path.is_file() if kind == "file" else path.is_dir()
    if not ok:
        raise UserError(f"{flag} {value}: {kind} not found; check the path")


def check_data_paths(subcommand: str, data: dict[str, Any]) -> None:
    """The files and folders named by ``--data.*`` exist (DetectionDataModule arguments)."""
    for split in ("train", "val", "test"):
        _exists(f"--data.{split}_csv", data.get(f"{split}_csv"))
        _exists(f"--data.{split}_ann_file", data.get(f"{split}_ann_file"))
        _exists(f"--data.{split}_images_dir", data.get(f"{split}_images_dir"), "folder")
    _exists("--data.image_dir", data.get("image_dir"), "folder")
    is_csv = any(data.get(f"{s}_csv") is not None for s in ("train", "val", "test"))
    data_dir = data.get("data_dir")
    if is_csv or data_dir is None or str(data_dir) == DEMO_DATA_DIR:
        return
    root = Path(str(data_dir))
    if not root.is_dir():
        raise UserError(
            f"--data.data_dir {data_dir}: folder not found; give a COCO folder "
            "(annotations/instances_train2017.json, train2017/) or use --data.train_csv"
        )
    if subcommand == "fit" and data.get("train_ann_file") is None:
        ann = root / "annotations" / "instances_train2017.json"
        if not ann.is_file():
            raise UserError(
                f"--data.data_dir {data_dir}: {ann} not found; pass --data.train_ann_file "
                "and --data.train_images_dir, or --data.train_csv for CSV data"
            )


def check_num_classes(requested: Any, from_data: int, class_names: list[str]) -> None:
    """``--model.num_classes``, when given, must equal the data's class count."""
    if requested is None:
        return
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise UserError(
            f"--model.num_classes {requested}: must be a positive int (the data has "
            f"{from_data}); leave it out to take it from the data"
        )
    if requested != from_data:
        shown = ", ".join(class_names[:8]) + (", ..." if len(class_names) > 8 else "")
        raise UserError(
            f"--model.num_classes {requested} disagrees with the data, which has {from_data} "
            f"classes ({shown}); leave it out to take it from the data"
        )


def _weights_cached(cfg: Any) -> bool:
    hf_id = getattr(cfg, "hf_hub_id", None)
    if hf_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for filename in (
                "model.safetensors",
                "pytorch_model.bin",
                "open_clip_pytorch_model.bin",
            ):
                if isinstance(try_to_load_from_cache(hf_id, filename), str):
                    return True
        except Exception:  # huggingface_hub missing or API change
            pass
    url = getattr(cfg, "url", None)
    if url:
        import torch.hub

        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])
        if cached.is_file():
            return True
    file = getattr(cfg, "file", None)
    return bool(file) and Path(str(file)).is_file()


def _host_reachable(host: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT_S):
            return True
    except OSError:
        return False


def check_pretrained_reachable(model_name: str) -> None:
    """Pretrained weights of ``model_name`` are cached or their host answers within seconds."""
    try:
        import timm.models

        cfg = timm.models.get_pretrained_cfg(model_name.split(":", 1)[-1])
    except Exception:  # unknown name: the model's own check names it
        return
    if cfg is None or _weights_cached(cfg):
        return
    host = "huggingface.co"
    url = getattr(cfg, "url", None)
    if not getattr(cfg, "hf_hub_id", None) and url:
        from urllib.parse import urlparse

        host = urlparse(url).hostname or host
    if not _host_reachable(host):
        raise UserError(
            f"pretrained weights of backbone '{model_name}' are not cached and {host} cannot "
            "be reached; add --model.backbone.pretrained false to train from scratch"
        )
