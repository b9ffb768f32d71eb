"""Post-processing: (point, class) candidates, scores, top-k, clipping per image, NMS, caps."""

from __future__ import annotations

import math

import pytest
import torch

from autotimm.models.postprocess import postprocess_detections, split_detections


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def one_level(batch: int = 2, classes: int = 2, size: int = 4, stride: int = 8):
    cls = torch.full((batch, classes, size, size), -20.0)
    ltrb = torch.full((batch, 4, size, size), 2.0)
    return cls, ltrb


def run(cls, ltrb, quality=None, sizes=None, **kwargs):
    batch = cls[0].shape[0]
    if sizes is None:
        sizes = torch.tensor([[64, 64]] * batch)
    dets = postprocess_detections(cls, ltrb, quality, (8, 16), sizes, **kwargs)
    return split_detections(dets, batch)


def test_every_class_of_a_point_is_a_candidate() -> None:
    cls, ltrb = one_level()
    cls[0, 0, 1, 1] = logit(0.9)
    cls[0, 1, 1, 1] = logit(0.6)  # same point, second class: kept too
    out = run([cls], [ltrb])
    assert out[0]["labels"].tolist() == [0, 1]
    torch.testing.assert_close(out[0]["scores"], torch.tensor([0.9, 0.6]))
    expected = torch.tensor([10.0, 10.0, 14.0, 14.0])  # centre (12, 12), 2 px each side
    assert torch.equal(out[0]["boxes"], expected.expand(2, 4))
    assert out[1]["boxes"].shape == (0, 4) and out[1]["labels"].dtype == torch.int64


def test_fcos_score_is_sqrt_of_cls_times_quality_and_objectness_multiplies() -> None:
    cls, ltrb = one_level(batch=1, classes=1)
    cls[0, 0, 0, 0] = logit(0.8)
    quality = torch.full((1, 1, 4, 4), logit(0.2))
    sqrt_scores = run([cls], [ltrb], [quality], quality_mode="sqrt")[0]["scores"]
    product = run([cls], [ltrb], [quality], quality_mode="product", score_thresh=0.01)
    torch.testing.assert_close(sqrt_scores, torch.tensor([0.4]))
    torch.testing.assert_close(product[0]["scores"], torch.tensor([0.16]))
    with pytest.raises(ValueError, match="quality_mode"):
        run([cls], [ltrb], [quality], quality_mode="mean")


def test_boxes_are_clipped_to_each_images_own_size() -> None:
    cls, ltrb = one_level()
    cls[:, 0, 3, 3] = logit(0.9)  # centre (28, 28)
    ltrb[:] = 10.0  # box (18, 18, 38, 38)
    out = run([cls], [ltrb], sizes=torch.tensor([[64, 64], [30, 24]]))
    assert out[0]["boxes"].tolist() == [[18.0, 18.0, 38.0, 38.0]]
    assert out[1]["boxes"].tolist() == [[18.0, 18.0, 24.0, 30.0]]  # W 24, H 30


def test_top_k_per_level_threshold_nms_and_cap() -> None:
    cls, ltrb = one_level(batch=1, classes=1, size=4)
    scores = torch.linspace(0.1, 0.9, 16).reshape(4, 4)
    cls[0, 0] = torch.log(scores / (1 - scores))
    ltrb[:] = 3.0  # 6 px boxes 8 px apart: no overlaps
    coarse_cls = torch.full((1, 1, 2, 2), logit(0.95))
    coarse_ltrb = torch.full((1, 4, 2, 2), 1.0)
    levels = ([cls, coarse_cls], [ltrb, coarse_ltrb])
    out = run(*levels, top_k=3)[0]
    assert len(out["scores"]) == 3 + 3  # the top 3 of each level
    assert (out["scores"][:-1] >= out["scores"][1:]).all()
    assert len(run(*levels, score_thresh=0.5)[0]["scores"]) == 8 + 4
    assert len(run(*levels, max_detections=5)[0]["scores"]) == 5
    ltrb[:] = 100.0  # every fine box clips to the whole image: NMS keeps the best one
    out = run(*levels, nms_thresh=0.5)[0]
    assert len(out["scores"]) == 1 + 4
    assert out["boxes"][-1].tolist() == [0.0, 0.0, 64.0, 64.0]  # 0.9 < the coarse 0.95
