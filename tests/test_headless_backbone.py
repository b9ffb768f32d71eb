"""AutoTimm's headless backbone helpers: BackboneConfig, create_backbone and friends."""

from __future__ import annotations

import time

import pytest
import torch

import autotimm
from autotimm import BackboneConfig, ModelSource, create_backbone, get_backbone_out_features


def test_create_backbone_is_headless() -> None:
    model = create_backbone(BackboneConfig("resnet18", pretrained=False, drop_rate=0.1))
    features = model.eval()(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, get_backbone_out_features(model)) == (2, 512)


def test_num_classes_and_extra_kwargs_reach_timm() -> None:
    cfg = BackboneConfig("resnet18", pretrained=False, num_classes=7, extra_kwargs={"in_chans": 1})
    assert create_backbone(cfg).eval()(torch.randn(1, 1, 32, 32)).shape == (1, 7)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="not found in timm"):
        create_backbone(BackboneConfig("no_such_model", pretrained=False))
    with pytest.raises(TypeError, match="cfg must be a str or BackboneConfig"):
        create_backbone(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_features"):
        get_backbone_out_features(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="limit must be an int >= 1"):
        autotimm.list_hf_hub_backbones(limit=0)


def test_pretrained_without_network_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import autotimm.core.backbone as backbone

    # no cache and no reachable host, whatever this machine has
    monkeypatch.setattr(backbone, "_uncached_weights_host", lambda name: "huggingface.co")
    monkeypatch.setattr(backbone.socket, "create_connection",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("unreachable")))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="pretrained=False"):
        create_backbone("resnet18")
    assert time.monotonic() - start < 10


def test_hub_listing_without_network_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    class Offline:
        def list_models(self, **kwargs):
            raise OSError("no route to host")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    with pytest.raises(RuntimeError, match="network access to huggingface.co"):
        autotimm.list_hf_hub_backbones(model_name="resnet")

    class Hub:
        def list_models(self, author, search, library, limit):
            assert (author, search, library, limit) == ("timm", "vit", "timm", 2)
            return [type("M", (), {"id": "timm/vit_a"})(), type("M", (), {"id": "timm/vit_b"})()]

    monkeypatch.setattr(huggingface_hub, "HfApi", Hub)
    assert autotimm.list_hf_hub_backbones(model_name="vit", limit=2, with_source=True) == [
        ("hf-hub:timm/vit_a", ModelSource.HF_HUB),
        ("hf-hub:timm/vit_b", ModelSource.HF_HUB),
    ]
