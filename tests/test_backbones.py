"""Every backbone of the reference page's "Backbone Selection" tables trains and predicts;
feature levels come from each model's ``feature_info``; clear errors for those that cannot serve."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from autotimm import FeatureBackboneConfig, ObjectDetector, TransformConfig
from autotimm.models.backbone import (
    ChannelsFirst,
    SimpleFeaturePyramid,
    build_detection_backbone,
)

#: The page's CNN and transformer tables, with the image side each is tested at
#: (the heavy ones small: the point is that they build, train and predict).
PAGE_BACKBONES: dict[str, int] = {
    "resnet18": 64,
    "resnet50": 64,
    "efficientnet_b3": 64,
    "convnext_tiny": 64,
    "resnet101": 64,
    "swin_tiny_patch4_window7_224": 64,
    "swin_small_patch4_window7_224": 64,
    "swin_base_patch4_window7_224": 64,
    "vit_base_patch16_224": 64,
}


def _batch(size: int) -> dict:
    boxes = torch.tensor([[4.0, 6.0, size * 0.6, size * 0.7]])
    return {
        "images": torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)),
        "boxes": [boxes],
        "labels": [torch.tensor([1])],
    }


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("name", list(PAGE_BACKBONES))
def test_page_backbone_trains_one_step_and_predicts(name: str) -> None:
    size = PAGE_BACKBONES[name]
    model = ObjectDetector(
        backbone=FeatureBackboneConfig(name, pretrained=False),
        num_classes=2,
        fpn_channels=8,
        head_num_convs=1,
        compile_model=False,
        deterministic=False,
    )
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = _batch(size)
    model.train()
    loss = model.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads, "no gradient reached the backbone"
    optimizer.step()
    model.eval()
    with torch.no_grad():
        (detections,) = model.predict(batch["images"])
    assert set(detections) >= {"boxes", "scores", "labels"}
    assert detections["boxes"].shape[-1] == 4


# ------------------------------------------------------- levels from feature_info
@pytest.mark.parametrize(
    ("name", "module_type", "channels"),
    [
        ("resnet18", nn.Module, (128, 256, 512)),  # 5 levels: indices 2, 3, 4
        ("convnext_tiny", nn.Module, (192, 384, 768)),  # 4 levels: indices 1, 2, 3
        ("mobilenetv3_small_100", nn.Module, (24, 48, 576)),
        ("regnetx_002", nn.Module, (56, 152, 368)),
        ("swin_tiny_patch4_window7_224", ChannelsFirst, (192, 384, 768)),  # NHWC -> NCHW
        ("vit_tiny_patch16_224", SimpleFeaturePyramid, (192, 192, 192)),
    ],
)
def test_levels_at_strides_8_16_32_as_nchw(name: str, module_type: type, channels: tuple) -> None:
    built = build_detection_backbone(FeatureBackboneConfig(name, pretrained=False))
    assert isinstance(built.module, module_type)
    assert built.strides == (8, 16, 32)
    assert built.channels == channels
    with torch.no_grad():
        maps = built.module(torch.randn(1, 3, 96, 96))
    assert [tuple(m.shape) for m in maps] == [
        (1, c, 96 // s, 96 // s) for c, s in zip(channels, built.strides, strict=True)
    ]


def test_the_simple_pyramid_adds_no_weights_to_the_backbone() -> None:
    built = build_detection_backbone(
        FeatureBackboneConfig("vit_tiny_patch16_224", pretrained=False)
    )
    assert list(built.module.parameters()) == list(built.module.body.parameters())


def test_explicit_out_indices_win() -> None:
    built = build_detection_backbone(
        FeatureBackboneConfig("resnet18", pretrained=False, out_indices=(3, 4))
    )
    assert built.strides == (16, 32)
    assert built.channels == (256, 512)


def test_transformers_run_at_any_image_size_and_reload() -> None:
    """Built with timm's dynamic image size: any side that is a multiple of 32 runs, and
    the weights do not depend on the data's size (a checkpoint loads into a new model)."""

    def make() -> ObjectDetector:
        return ObjectDetector(
            backbone=FeatureBackboneConfig("vit_tiny_patch16_224", pretrained=False),
            num_classes=2,
            fpn_channels=8,
            head_num_convs=1,
            compile_model=False,
            deterministic=False,
            transform_config=TransformConfig(image_size=96),
        )

    model = make().eval()
    for size in (96, 160):
        with torch.no_grad():
            cls_out, _, _ = model(torch.randn(1, 3, size, size))
        assert [tuple(c.shape[-2:]) for c in cls_out][:3] == [
            (size // 8, size // 8),
            (size // 16, size // 16),
            (size // 32, size // 32),
        ]
    make().load_state_dict(model.state_dict())


def test_image_size_sets_the_position_embedding_grid() -> None:
    built = build_detection_backbone(
        FeatureBackboneConfig("vit_tiny_patch16_224", pretrained=False), image_size=96
    )
    assert built.module.body.model.patch_embed.img_size == (96, 96)
    with torch.no_grad():
        assert [m.shape[-1] for m in built.module(torch.randn(1, 3, 64, 64))] == [8, 4, 2]


def test_user_image_size_keywords_are_kept() -> None:
    built = build_detection_backbone(
        FeatureBackboneConfig(
            "vit_tiny_patch16_224", pretrained=False, extra_kwargs={"img_size": 64}
        ),
        image_size=128,
    )
    with torch.no_grad():
        assert [m.shape[-1] for m in built.module(torch.randn(1, 3, 64, 64))] == [8, 4, 2]
    with pytest.raises(AssertionError):  # timm's own check: fixed at the user's size
        built.module(torch.randn(1, 3, 128, 128))


def test_a_backbone_that_cannot_serve_names_what_it_returns() -> None:
    with pytest.raises(ValueError, match=r"levit_128.*strides \(16, 32, 64\).*out_indices"):
        build_detection_backbone(FeatureBackboneConfig("levit_128", pretrained=False))
    with pytest.raises(ValueError, match="not found in timm"):
        build_detection_backbone("no_such_net")


def test_strides_that_do_not_match_the_backbone_are_refused() -> None:
    with pytest.raises(ValueError, match=r"backbone returns strides \(16, 32\)"):
        ObjectDetector(
            backbone=FeatureBackboneConfig("resnet18", pretrained=False, out_indices=(3, 4)),
            num_classes=2,
            compile_model=False,
            deterministic=False,
        )


def test_pretrained_without_network_fails_fast_and_says_so(monkeypatch, tmp_path) -> None:
    import socket
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"cannot be reached.*pretrained=False"):
        ObjectDetector(backbone="resnet18", num_classes=2, compile_model=False, deterministic=False)
    assert time.perf_counter() - start < 5.0


def _zero_gain_norms(module: nn.Module) -> int:
    return sum(
        1 for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and not m.weight.detach().any()
    )


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "regnetx_002"])
def test_from_scratch_residual_branches_start_with_unit_gain(name: str) -> None:
    import timm

    plain = timm.create_model(name, pretrained=False, features_only=True)
    assert _zero_gain_norms(plain) > 0  # timm's zero_init_last, which the detector undoes
    built = build_detection_backbone(FeatureBackboneConfig(name, pretrained=False)).module
    assert _zero_gain_norms(built) == 0
    kept = build_detection_backbone(
        FeatureBackboneConfig(name, pretrained=False, extra_kwargs={"zero_init_last": True})
    ).module
    assert _zero_gain_norms(kept) == _zero_gain_norms(plain)
