"""Configurations of the ``autotimm`` command: the embedded demo, and a start for own data.

Plain data (no torch import), read by the Lightning CLI and by ``--print_config``.

* **Demo** (``autotimm fit`` with no data option): the embedded synthetic shapes,
  128-pixel images, a ``resnet18`` trained from scratch with a 64-channel FPN,
  3 epochs — minutes on a CPU.
* **Own data** (any ``--data.*`` source, e.g. ``--data.data_dir`` or
  ``--data.train_csv``): what a practitioner starts from — a ``resnet50`` with
  ImageNet-pretrained weights, 512-pixel images, a 256-channel FPN with 4-conv
  head branches, AdamW 1e-4 with a cosine schedule, 50 epochs. The pretrained
  weights need network access (or timm's local cache); without them the command
  stops at once and says to add ``--model.backbone.pretrained false``.

Every value can be overridden on the command line or in a ``--config`` file.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEMO_DATA",
    "DEMO_DATA_DIR",
    "DEMO_MODEL",
    "DEMO_TRAINER",
    "OWN_DATA_DATA",
    "OWN_DATA_MODEL",
    "OWN_DATA_TRAINER",
    "RUNS_DIR",
]

#: ``data_dir`` of the embedded shapes dataset.
DEMO_DATA_DIR = "builtin:shapes"
#: Folder under which every run writes (``<RUNS_DIR>/lightning_logs/version_N``).
RUNS_DIR = "autotimm_runs"

#: Model of the demo (``autotimm fit`` with no other argument).
DEMO_MODEL: dict[str, Any] = {
    "class_path": "autotimm.ObjectDetector",
    "init_args": {
        "backbone": {"model_name": "resnet18", "pretrained": False},
        "detection_arch": "fcos",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "optimizer": "adamw",
        "scheduler": "cosine",
        "fpn_channels": 64,
        "head_num_convs": 2,
        "compile_model": False,
        "seed": None,
        "deterministic": False,
    },
}

#: Data of the demo: the embedded shapes, written once as a COCO folder.
DEMO_DATA: dict[str, Any] = {
    "class_path": "autotimm.DetectionDataModule",
    "init_args": {
        "data_dir": DEMO_DATA_DIR,
        "image_size": 128,
        "batch_size": 16,
        "num_workers": 2,
        "augmentation_preset": "light",
    },
}

#: Trainer of the demo (on top of AutoTrainer's defaults).
DEMO_TRAINER: dict[str, Any] = {
    "max_epochs": 3,
    "tuner_config": False,
    "default_root_dir": RUNS_DIR,
    "log_every_n_steps": 10,
}

#: Model for own data: a practitioner's starting point.
OWN_DATA_MODEL: dict[str, Any] = {
    "class_path": "autotimm.ObjectDetector",
    "init_args": {
        "backbone": {"model_name": "resnet50", "pretrained": True},
        "detection_arch": "fcos",
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "optimizer": "adamw",
        "scheduler": "cosine",
        "fpn_channels": 256,
        "head_num_convs": 4,
        "compile_model": True,
        "seed": None,
        "deterministic": False,
    },
}

#: Data settings for own data (the data source comes from the command line).
OWN_DATA_DATA: dict[str, Any] = {
    "image_size": 512,
    "batch_size": 16,
    "augmentation_preset": "default",
}

#: Trainer for own data.
OWN_DATA_TRAINER: dict[str, Any] = {
    "max_epochs": 50,
    "tuner_config": False,
    "default_root_dir": RUNS_DIR,
    "log_every_n_steps": 50,
}
