"""Every code example of the AutoTimm ObjectDetector reference page runs as written.

The examples are kept here verbatim (the page is ``../shared/seeds/000_7438159276e88d1e.txt``
beside the repository; when it is there, the test also checks that each example is
still word for word on the page). They run top to bottom in one namespace, as a
reader would run them, with only what no example can do here replaced:

- pretrained weights: ``timm.create_model`` builds without them and nothing is
  downloaded (any network connection fails the test);
- ``data`` (used, never defined, by "Training Tips") is a tiny COCO folder of
  64-pixel images, ``num_classes`` its class count, and ``test.jpg`` a small image;
- ``AutoTrainer`` runs one batch (``fast_dev_run``) of whatever epochs it is given.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import autotimm
import autotimm.core.backbone as core_backbone

PAGE = Path(__file__).resolve().parents[1].parent / "shared/seeds/000_7438159276e88d1e.txt"

#: (title on the page, code) in page order.
EXAMPLES: list[tuple[str, str]] = [
    (
        "Basic Usage",
        """
import autotimm as at  # recommended alias
from autotimm import ObjectDetector, MetricConfig

metrics = [
    MetricConfig(
        name="mAP",
        backend="torchmetrics",
        metric_class="MeanAveragePrecision",
        params={"box_format": "xyxy", "iou_type": "bbox"},
        stages=["val", "test"],
        prog_bar=True,
    ),
]

model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    lr=1e-4,
)
""",
    ),
    (
        "API Reference example",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=[
        MetricConfig(
            name="mAP",
            backend="torchmetrics",
            metric_class="MeanAveragePrecision",
            params={},
            stages=["val", "test"],
        ),
    ],
    lr=1e-4,
)
""",
    ),
    (
        "With FeatureBackboneConfig",
        """
from autotimm import FeatureBackboneConfig, ObjectDetector

cfg = FeatureBackboneConfig(
    model_name="resnet50",
    pretrained=True,
    out_indices=(2, 3, 4),  # C3, C4, C5
)

model = ObjectDetector(
    backbone=cfg,
    num_classes=80,
    metrics=metrics,
)
""",
    ),
    (
        "With Transformer Backbone",
        """
model = ObjectDetector(
    backbone="swin_tiny_patch4_window7_224",
    num_classes=80,
    metrics=metrics,
    lr=1e-5,  # Lower LR for transformers
    fpn_channels=256,
)
""",
    ),
    (
        "Custom FPN and Head",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    fpn_channels=256,      # FPN channels (128, 256, or 512)
    head_num_convs=4,      # Number of conv layers in head
)
""",
    ),
    (
        "Custom Loss Configuration",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    focal_alpha=0.25,
    focal_gamma=2.0,
    cls_loss_weight=1.0,
    reg_loss_weight=1.0,
    centerness_loss_weight=1.0,
)
""",
    ),
    (
        "Custom Inference Settings",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    score_thresh=0.05,              # Confidence threshold
    nms_thresh=0.5,                 # NMS IoU threshold
    max_detections_per_image=100,   # Max detections to keep
)
""",
    ),
    (
        "With TransformConfig (Preprocessing)",
        """
from autotimm import ObjectDetector, TransformConfig

model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    transform_config=TransformConfig(),  # Enable preprocess()
)

# Now you can preprocess raw images
from PIL import Image
image = Image.open("test.jpg")
tensor = model.preprocess(image)  # Returns preprocessed tensor
output = model(tensor)
""",
    ),
    (
        "Get Model's Data Config",
        """
model = ObjectDetector(
    backbone="swin_tiny_patch4_window7_224",
    num_classes=80,
    metrics=metrics,
    transform_config=TransformConfig(),
)

# Get normalization config
config = model.get_data_config()
print(f"Mean: {config['mean']}")
print(f"Std: {config['std']}")
print(f"Input size: {config['input_size']}")
""",
    ),
    (
        "Frozen Backbone",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    freeze_backbone=True,  # Only train FPN and head
    lr=1e-3,               # Higher LR when backbone frozen
)
""",
    ),
    (
        "With MultiStep Scheduler",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    lr=1e-4,
    scheduler="multistep",
    scheduler_kwargs={"milestones": [8, 11], "gamma": 0.1},
)
""",
    ),
    (
        "Standard COCO Training",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    lr=1e-4,
    scheduler="multistep",
    scheduler_kwargs={"milestones": [8, 11], "gamma": 0.1},
)

trainer = AutoTrainer(
    max_epochs=12,
    gradient_clip_val=1.0,
)
""",
    ),
    (
        "Two-phase training",
        """
# Phase 1: Train FPN and head only
model = ObjectDetector(
    backbone="resnet50",
    num_classes=80,
    metrics=metrics,
    freeze_backbone=True,
    lr=1e-3,
)
trainer = AutoTrainer(max_epochs=3)
trainer.fit(model, datamodule=data)

# Phase 2: Fine-tune entire model
for param in model.backbone.parameters():
    param.requires_grad = True
model._lr = 1e-4
trainer = AutoTrainer(max_epochs=12, gradient_clip_val=1.0)
trainer.fit(model, datamodule=data)
""",
    ),
    (
        "Small Object Detection",
        """
model = ObjectDetector(
    backbone="resnet50",
    num_classes=num_classes,
    metrics=metrics,
    fpn_channels=256,  # More capacity
    head_num_convs=4,  # Deeper head
    # Adjust regression ranges to emphasize smaller levels
    regress_ranges=(
        (-1, 32),      # P3: extra small
        (32, 64),      # P4: very small
        (64, 128),     # P5: small
        (128, 256),    # P6: medium
        (256, float("inf")),  # P7: large
    ),
)
""",
    ),
    (
        "to_onnx example",
        """
model = ObjectDetector(backbone="resnet50", num_classes=80)
path = model.to_onnx("detector.onnx")
""",
    ),
]


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.skipif(not PAGE.exists(), reason="the reference page is not beside the repository")
def test_examples_are_the_pages_own() -> None:
    raw = PAGE.read_text(encoding="utf-8")
    page = _collapse(raw)
    page_without_prompts = _collapse(re.sub(r"(>>>|\.\.\.) ?", "", raw))  # docstring examples
    for title, code in EXAMPLES:
        text = _collapse(code)
        assert text in page or text in page_without_prompts, f"{title!r} is not on the page"


def _write_coco(root: Path, split: str, n: int, rng: np.random.Generator) -> None:
    images_dir = root / f"{split}2017"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images_dir / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64})
        for k, (x, y) in enumerate(((4, 6), (30, 28))):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": k + 1,
                    "bbox": [x, y, 24, 20],
                    "area": 480,
                    "iscrowd": 0,
                }
            )
    (root / "annotations").mkdir(exist_ok=True)
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}],
    }
    (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(coco))


@pytest.fixture
def reader_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """No weights, no network, tiny data, one-batch training; returns the page's free names."""
    import socket

    import timm

    real_create = timm.create_model

    def without_weights(*args, **kwargs):
        kwargs["pretrained"] = False
        return real_create(*args, **kwargs)

    def no_network(*args, **kwargs):
        raise AssertionError("an example tried to reach the network")

    monkeypatch.setattr(timm, "create_model", without_weights)
    monkeypatch.setattr(core_backbone, "check_weights_reachable", lambda *a, **k: None)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)

    real_trainer = autotimm.AutoTrainer

    class OneBatchTrainer(real_trainer):
        def __init__(self, *args, **kwargs):
            kwargs.update(fast_dev_run=True, default_root_dir=str(tmp_path), logger=False)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(autotimm, "AutoTrainer", OneBatchTrainer)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save("test.jpg")
    _write_coco(tmp_path / "coco", "train", 2, rng)
    _write_coco(tmp_path / "coco", "val", 2, rng)
    data = autotimm.DetectionDataModule(
        data_dir=str(tmp_path / "coco"), image_size=64, batch_size=2, num_workers=0
    )
    return {"AutoTrainer": OneBatchTrainer, "data": data, "num_classes": 2}


def test_every_example_runs_as_written(reader_setup: dict) -> None:
    namespace: dict = dict(reader_setup)
    for title, code in EXAMPLES:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            try:
                exec(compile(textwrap.dedent(code), f"<{title}>", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"example {title!r} failed: {exc!r}") from exc
        if title == "Get Model's Data Config":
            assert "Input size: (3, 224, 224)" in printed.getvalue()
        if title == "With TransformConfig (Preprocessing)":
            assert tuple(namespace["tensor"].shape) == (1, 3, 224, 224)
            assert len(namespace["output"]) == 3  # cls, reg, centerness per level
        if title == "Two-phase training":
            assert all(p.requires_grad for p in namespace["model"].backbone.parameters())
        if title == "to_onnx example":
            assert Path(namespace["path"]).is_file()
