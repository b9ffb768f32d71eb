"""Channels-last convolution weights: where they are used, and that nothing else changes."""

from __future__ import annotations

import io

import pytest
import torch
from test_detector_api import make

from autotimm.models.layout import conv_memory_format, set_conv_layout


def conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.dim() == 4]


def is_channels_last(model: torch.nn.Module) -> bool:
    """All 4-D weights channels-last, and at least one not also NCHW-contiguous."""
    weights = conv_weights(model)
    return all(w.is_contiguous(memory_format=torch.channels_last) for w in weights) and any(
        not w.is_contiguous() for w in weights
    )


def batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, 3, 2, generator=g) * 40
    return {
        "images": torch.randn(2, 3, 64, 96, generator=g),
        "boxes": list(torch.cat([xy, xy + 8 + torch.rand(2, 3, 2, generator=g) * 20], -1)),
        "labels": list(torch.randint(0, 2, (2, 3), generator=g)),
    }


@pytest.mark.parametrize(
    ("device", "channels_last", "expected"),
    [
        ("cpu", None, torch.channels_last),
        ("cuda", None, torch.contiguous_format),
        ("mps", None, torch.contiguous_format),
        ("cuda", True, torch.channels_last),
        ("cpu", False, torch.contiguous_format),
    ],
)
def test_layout_by_device(device: str, channels_last: bool | None, expected) -> None:
    assert conv_memory_format(torch.device(device), channels_last) == expected


def test_default_is_channels_last_on_the_cpu_and_false_is_nchw() -> None:
    nchw = make(channels_last=False)
    assert all(w.is_contiguous() for w in conv_weights(nchw))
    assert not is_channels_last(nchw)
    assert is_channels_last(make(channels_last=True))
    assert is_channels_last(make())  # None: on the CPU


def test_layout_survives_moves_and_keeps_the_parameters() -> None:
    model = make(channels_last=None)
    before = list(model.parameters())
    model.to(torch.float64)
    assert is_channels_last(model)
    assert all(a is b for a, b in zip(before, model.parameters(), strict=True))
    model.float().cpu()
    assert is_channels_last(model)


def test_false_leaves_the_layout_to_the_user() -> None:
    model = make(channels_last=False)
    model.to(memory_format=torch.channels_last)  # PyTorch's own idiom
    assert is_channels_last(model)
    model.double()
    assert is_channels_last(model)


def test_default_off_the_cpu_is_nchw_then_left_to_the_user() -> None:
    model = make()  # channels-last on the CPU
    model.to("meta")  # another device (no data): back to NCHW
    assert all(w.is_contiguous() for w in conv_weights(model))
    model.to(memory_format=torch.channels_last)  # the user's own choice there stays
    assert is_channels_last(model)
    model.to("meta", memory_format=torch.contiguous_format)
    model.to_empty(device="cpu")  # back on the CPU: channels-last again
    assert is_channels_last(model)


def test_set_conv_layout_converts_back_and_forth() -> None:
    model = make(channels_last=False)
    set_conv_layout(model, torch.channels_last)
    assert is_channels_last(model)
    set_conv_layout(model, torch.contiguous_format)
    assert all(w.is_contiguous() for w in conv_weights(model))


@pytest.mark.parametrize("arch", ["fcos", "yolox"])
def test_outputs_losses_and_gradients_do_not_depend_on_the_layout(arch: str) -> None:
    torch.manual_seed(0)
    nhwc = make(detection_arch=arch, channels_last=True)
    nchw = make(detection_arch=arch, channels_last=False)
    nchw.load_state_dict(nhwc.state_dict())
    data = batch()
    losses = [m.compute_losses(data)["loss"] for m in (nhwc, nchw)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    for loss in losses:
        loss.backward()
    for (name, a), b in zip(nhwc.named_parameters(), nchw.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)
    nhwc.eval()
    nchw.eval()
    with torch.no_grad():
        for a, b in zip(nhwc(data["images"]), nchw(data["images"]), strict=True):
            if a is not None:
                for x, y in zip(a, b, strict=True):
                    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)


def test_state_dict_round_trip_across_layouts() -> None:
    source = make(channels_last=True)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target = make(channels_last=False)
    target.load_state_dict(torch.load(buffer))
    assert all(w.is_contiguous() for w in conv_weights(target))
    for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_channels_last_must_be_a_bool_or_none(bad) -> None:
    with pytest.raises(TypeError, match="channels_last must be True, False or None"):
        make(channels_last=bad)
