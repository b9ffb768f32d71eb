"""Transforms keep boxes right (against hand-computed boxes); collate functions."""

from __future__ import annotations

import pickle

import pytest
import torch

from autotimm.data.collate import FCOSTargetCollate, detection_collate_fn
from autotimm.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DetectionTransform,
    build_detection_transforms,
    resolve_normalization,
)


def _item(h: int, w: int, boxes, labels, crowd=None) -> dict:
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    for x0, y0, x1, y1 in boxes:
        image[:, int(y0) : int(y1), int(x0) : int(x1)] = 255
    return {
        "image": image,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "image_id": 7,
        "orig_size": torch.tensor([h, w]),
        "crowd_boxes": torch.tensor(crowd or [], dtype=torch.float32).reshape(-1, 4),
        "crowd_labels": torch.zeros(len(crowd or []), dtype=torch.int64),
    }


def _plain(size: int, **kw) -> DetectionTransform:
    return DetectionTransform(size, mean=(0, 0, 0), std=(1, 1, 1), **kw)


def test_resize_longest_side_and_pad() -> None:
    out = _plain(100)(_item(100, 200, [[20, 10, 60, 50]], [3], crowd=[[0, 0, 200, 100]]))
    assert out["image"].shape == (3, 100, 100) and out["image"].dtype == torch.float32
    assert out["boxes"].tolist() == [[10, 5, 30, 25]]
    assert out["labels"].tolist() == [3]
    assert out["crowd_boxes"].tolist() == [[0, 0, 100, 50]]
    assert out["resized_size"].tolist() == [50, 100]
    assert out["orig_size"].tolist() == [100, 200] and out["image_id"] == 7
    img = out["image"][0]
    assert img[15, 20] == pytest.approx(1.0)  # inside the box
    assert img[40, 70] == pytest.approx(0.0)  # outside, in the image
    assert img[75, 50] == pytest.approx(114 / 255)  # padding below the image


def test_upscale_tall_image() -> None:
    out = _plain(80)(_item(40, 30, [[1, 2, 11, 22]], [0]))
    # scale 2: 80x60 region, padded on the right
    assert out["boxes"].tolist() == [[2, 4, 22, 44]]
    assert out["resized_size"].tolist() == [80, 60]
    assert out["image"][0, 20, 70] == pytest.approx(114 / 255)


def test_horizontal_flip() -> None:
    t = _plain(100, train=True, preset="light")
    t.hflip_prob = 1.0
    out = t(_item(100, 200, [[20, 10, 60, 50], [150, 0, 200, 100]], [0, 1]))
    # flipped within the 100-wide resized image, before padding
    assert out["boxes"].tolist() == [[70, 5, 90, 25], [0, 0, 25, 50]]
    assert out["image"][0, 15, 80] == pytest.approx(1.0)
    assert out["image"][0, 15, 20] == pytest.approx(1.0)  # the second box, flipped
    assert out["image"][0, 15, 50] == pytest.approx(0.0)
    t.hflip_prob = 0.0
    assert t(_item(100, 200, [[20, 10, 60, 50]], [0]))["boxes"].tolist() == [[10, 5, 30, 25]]


def test_colour_jitter_leaves_boxes() -> None:
    torch.manual_seed(0)
    t = _plain(50, train=True, preset="strong")
    t.hflip_prob = 0.0
    out = t(_item(50, 50, [[5, 5, 20, 30]], [1]))
    assert out["boxes"].tolist() == [[5, 5, 20, 30]]


def test_normalisation_and_small_boxes() -> None:
    t = DetectionTransform(20, min_bbox_area=10.0)
    out = t(_item(40, 40, [[0, 0, 4, 4], [10, 10, 30, 30]], [0, 1]))
    # scale 0.5: the first box becomes 2x2 (area 4 < 10) and is dropped
    assert out["boxes"].tolist() == [[5, 5, 15, 15]] and out["labels"].tolist() == [1]
    expected = (0.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert out["image"][0, 0, 19] == pytest.approx(expected, abs=1e-5)


def test_boxes_clamped_and_degenerate_dropped() -> None:
    item = _item(20, 20, [[5, 5, 10, 10]], [0])
    item["boxes"] = torch.tensor([[-3.0, 2.0, 8.0, 25.0], [19.5, 3.0, 30.0, 9.0]])
    item["labels"] = torch.tensor([0, 1])
    out = _plain(20)(item)
    assert out["boxes"].tolist() == [[0, 2, 8, 20], [19.5, 3, 20, 9]]


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="augmentation preset"):
        DetectionTransform(64, preset="randaugment")
    with pytest.raises(ValueError, match="image_size"):
        DetectionTransform(0)


def test_build_transforms_and_normalisation() -> None:
    train, ev = build_detection_transforms(96, "light")
    assert train.train and not ev.train and train.image_size == ev.image_size == 96
    assert ev.hflip_prob == 0.0 and train.hflip_prob == 0.5
    mean, std = resolve_normalization("resnet18")
    assert len(mean) == 3 and len(std) == 3

    class Cfg:
        image_size = 48
        preset = "none"
        mean = (0.5, 0.5, 0.5)
        std = (0.25, 0.25, 0.25)
        use_timm_config = True
        interpolation = "bicubic"
        min_bbox_area = 2.0

    train, ev = build_detection_transforms(96, "default", Cfg())
    assert train.image_size == 48 and train.hflip_prob == 0.0 and train.mean == [0.5] * 3
    assert train.interpolation == "bicubic" and train.min_bbox_area == 2.0


def test_transform_config_from_autotimm() -> None:
    tc = pytest.importorskip("autotimm.data.transform_config")
    train, _ = build_detection_transforms(640, "default", tc.TransformConfig(image_size=64))
    assert train.image_size == 64


def test_collate_pads_to_largest() -> None:
    t = _plain(32, pad=False)
    a = t(_item(32, 16, [[1, 1, 5, 5]], [0]))
    b = t(_item(16, 32, [[2, 2, 6, 6]], [1]))
    batch = detection_collate_fn([a, b])
    assert batch["images"].shape == (2, 3, 32, 32)
    assert batch["images"][0, 0, 0, 20] == 0  # padded area
    assert batch["image_ids"] == [7, 7]
    assert batch["orig_sizes"].tolist() == [[32, 16], [16, 32]]
    assert batch["resized_sizes"].tolist() == [[32, 16], [16, 32]]
    assert [b.tolist() for b in batch["labels"]] == [[0], [1]]
    assert len(batch["crowd_boxes"]) == 2
    assert detection_collate_fn([a, b], size_divisor=24)["images"].shape == (2, 3, 48, 48)
    with pytest.raises(ValueError, match="empty batch"):
        detection_collate_fn([])


def test_fcos_target_collate_matches_op() -> None:
    from autotimm.ops import fcos_targets

    t = _plain(64)
    items = [t(_item(64, 64, [[4, 4, 40, 30]], [1])), t(_item(64, 48, [[0, 0, 10, 10]], [0]))]
    collate = pickle.loads(pickle.dumps(FCOSTargetCollate(strides=(8, 16, 32, 64, 128))))
    batch = collate(items)
    cls, reg, ctr = batch["targets"]
    sizes = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert cls.shape == (2, sum(h * w for h, w in sizes)) and reg.shape == (*cls.shape, 4)
    ref = fcos_targets(
        batch["boxes"],
        batch["labels"],
        image_size=(64, 64),
        strides=(8, 16, 32, 64, 128),
        feature_sizes=sizes,
    )
    for got, want in zip((cls, reg, ctr), ref, strict=True):
        assert torch.equal(got, want)
    assert (cls == 1).any() and (cls == 0).any()


def test_training_with_the_target_collate_gives_the_same_loss() -> None:
    from autotimm import FeatureBackboneConfig, ObjectDetector

    t = _plain(64)
    items = [
        t(_item(64, 64, [[4, 4, 40, 30], [20, 30, 60, 62]], [1, 0])),
        t(_item(64, 48, [[0, 0, 10, 10]], [0])),
    ]
    model = ObjectDetector(
        FeatureBackboneConfig("resnet18", pretrained=False),
        num_classes=2,
        fpn_channels=16,
        head_num_convs=1,
        compile_model=False,
        deterministic=False,
    )
    with_targets = FCOSTargetCollate(
        strides=model.strides, center_sampling_radius=model.center_sampling_radius
    )(items)
    plain = detection_collate_fn(items)
    assert "targets" in with_targets and "targets" not in plain
    torch.testing.assert_close(
        model.compute_losses(with_targets)["loss"], model.compute_losses(plain)["loss"]
    )
