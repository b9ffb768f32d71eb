"""Channels-last BatchNorm with float64 sums: the native ops against float64 torch,
and PreciseBatchNorm2d against nn.BatchNorm2d (in float64 as the reference)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.layers import BatchNormAct2d

from autotimm import _native
from autotimm.models.batchnorm import (
    PreciseBatchNorm2d,
    PreciseBatchNormAct2d,
    use_precise_batch_norm,
)


def reference_bn(x64: torch.Tensor, g64: torch.Tensor, weight: torch.Tensor | None):
    """nn.functional.batch_norm in float64: output, input/weight/bias grads."""
    x = x64.clone().requires_grad_()
    w = None if weight is None else weight.double().clone().requires_grad_()
    b = None if weight is None else torch.zeros_like(w).requires_grad_()
    y = torch.nn.functional.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)
    y.backward(g64)
    return y.detach(), x.grad, None if w is None else w.grad, None if b is None else b.grad


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# ----------------------------------------------------------------- native ops
@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 300),
    channels=st.integers(1, 40),
    loc=st.sampled_from([0.0, 3.0, -50.0, 1e4]),
    scale=st.sampled_from([1e-3, 1.0, 100.0]),
    strided=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_moments_match_float64(rows, channels, loc, scale, strided, seed) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, channels * (2 if strided else 1))) * scale + loc).astype(
        np.float32
    )
    if strided:  # a non-contiguous view is read in logical order
        x = x[:, ::2]
    mean, var = _native.batch_norm_moments(x, 1)
    x64 = x.astype(np.float64)
    assert mean.dtype == np.float64 and mean.shape == (channels,)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(var, x64.var(0), rtol=1e-9, atol=1e-12 * scale**2)


@settings(max_examples=120, deadline=None)
@given(
    rows=st.integers(2, 300),
    channels=st.integers(1, 24),
    loc=st.sampled_from([0.0, 5.0, -30.0]),
    strided=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_grad_sums_match_float64(rows, channels, loc, strided, seed) -> None:
    """The bias and weight gradients of BatchNorm from the sums, against float64
    autograd on the same float32 values."""
    g = torch.Generator().manual_seed(seed)
    x64 = torch.randn(rows, channels, 1, 1, generator=g, dtype=torch.float64) + loc
    x64 = x64.float().double()
    g64 = torch.randn(rows, channels, 1, 1, generator=g, dtype=torch.float64).float().double()
    weight = torch.ones(channels, dtype=torch.float64)
    _, _, gw_ref, gb_ref = reference_bn(x64, g64, weight)
    x = x64.float().view(rows, channels).numpy()
    grad = g64.float().view(rows, channels).numpy()
    if strided:  # non-contiguous views are read in logical order
        x, grad = np.repeat(x, 2, axis=1)[:, ::2], np.repeat(grad, 2, axis=1)[:, ::2]
    mean, var = _native.batch_norm_moments(x, 1)
    sum_grad, sum_centered = _native.batch_norm_grad_sums(grad, x, mean, 1)
    assert sum_grad.dtype == np.float64 and sum_grad.shape == (channels,)
    np.testing.assert_allclose(sum_grad, gb_ref.numpy(), rtol=1e-9, atol=1e-12)
    grad_w = sum_centered / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(grad_w, gw_ref.numpy(), rtol=1e-9, atol=1e-12)


def test_results_do_not_depend_on_the_threads() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((70_001, 3)).astype(np.float32)
    g = rng.standard_normal((70_001, 3)).astype(np.float32)
    one, many = (_native.batch_norm_moments(x, n) for n in (1, 2))
    assert all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))
    a = _native.batch_norm_grad_sums(g, x, one[0], 1)
    b = _native.batch_norm_grad_sums(g, x, one[0], 2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_nan_and_inf_stay_in_their_channel() -> None:
    x = np.array([[1.0, np.nan, 1.0], [2.0, 1.0, np.inf], [3.0, 0.0, 1.0]], np.float32)
    mean, var = _native.batch_norm_moments(x, 1)
    assert mean[0] == 2.0 and np.isclose(var[0], 2 / 3)
    assert np.isnan(mean[1]) and np.isnan(var[1])
    assert not np.isfinite(var[2])


def test_a_constant_channel_has_zero_variance() -> None:
    x = np.full((1000, 2), 7.3, np.float32)
    mean, var = _native.batch_norm_moments(x, 1)
    assert np.all(mean == np.float64(np.float32(7.3))) and np.all(var == 0.0)


def test_bad_arguments_name_themselves() -> None:
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(TypeError, match="x has dtype float64"):
        _native.batch_norm_moments(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"x has shape \(12,\); expected \(rows, C\)"):
        _native.batch_norm_moments(x.ravel())
    with pytest.raises(ValueError, match="x: has no values per channel"):
        _native.batch_norm_moments(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match=r"grad has shape \(4, 2\); expected \(4, 3\)"):
        _native.batch_norm_grad_sums(np.zeros((4, 2), np.float32), x, np.zeros(3))
    with pytest.raises(ValueError, match=r"mean has shape \(2,\); expected \(3,\) to match"):
        _native.batch_norm_grad_sums(x, x, np.zeros(2))
    with pytest.raises(TypeError, match="mean has dtype float32"):
        _native.batch_norm_grad_sums(x, x, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="grad has dtype float64"):
        _native.batch_norm_grad_sums(x.astype(np.float64), x, np.zeros(3))


# ------------------------------------------------------------- the module
def pair(channels: int, **kwargs) -> tuple[nn.BatchNorm2d, PreciseBatchNorm2d]:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(channels, **kwargs)
    if plain.affine:
        with torch.no_grad():
            plain.weight.uniform_(0.5, 1.5)
            plain.bias.normal_()
    precise = PreciseBatchNorm2d(channels, **kwargs)
    precise.load_state_dict(plain.state_dict())
    return plain, precise


@pytest.mark.parametrize("loc", [0.0, 20.0])
def test_channels_last_is_as_precise_as_nchw(loc: float) -> None:
    """On 38 400 values per channel the native kernel's channels-last float32
    sums miss float64 by far more than its NCHW ones; the float64 sums do not."""
    g = torch.Generator().manual_seed(1)
    x64 = torch.randn(8, 16, 60, 80, generator=g, dtype=torch.float64) + loc
    g64 = torch.randn(x64.shape, generator=g, dtype=torch.float64)
    plain, precise = pair(16)
    ref = nn.BatchNorm2d(16).double()
    ref.load_state_dict(plain.state_dict())
    xr = x64.clone().requires_grad_()
    ref(xr).backward(g64)
    errors = {}
    for name, module, fmt in [
        ("nchw", plain, torch.contiguous_format),
        ("precise", precise, torch.channels_last),
    ]:
        x = x64.float().contiguous(memory_format=fmt).requires_grad_()
        y = module(x)
        y.backward(g64.float().contiguous(memory_format=fmt))
        assert y.is_contiguous(memory_format=fmt) and x.grad.is_contiguous(memory_format=fmt)
        errors[name] = [
            max_rel(y, ref(x64).detach()),
            max_rel(x.grad, xr.grad),
            max_rel(module.weight.grad, ref.weight.grad),
            max_rel(module.bias.grad, ref.bias.grad),
            max_rel(module.running_mean, ref.running_mean),
            max_rel(module.running_var, ref.running_var),
        ]
        plain.weight.grad = None  # the NCHW pass shares nothing with the next
    for got, nchw in zip(errors["precise"], errors["nchw"], strict=True):
        assert got <= max(2 * nchw, 3e-7), errors


@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_statistics_follow_batchnorm2d(momentum) -> None:
    plain, precise = pair(5, momentum=momentum)
    for step in range(3):
        x = torch.randn(4, 5, 6, 7) * (step + 1) + step
        plain(x)
        precise(x.contiguous(memory_format=torch.channels_last))
    assert precise.num_batches_tracked.item() == plain.num_batches_tracked.item() == 3
    torch.testing.assert_close(precise.running_mean, plain.running_mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(precise.running_var, plain.running_var, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "case", ["eval", "nchw", "float64", "1x1", "no_affine", "no_running_stats", "one_value"]
)
def test_other_cases_are_batchnorm2d(case: str) -> None:
    kwargs = {"affine": False} if case == "no_affine" else {}
    if case == "no_running_stats":
        kwargs = {"track_running_stats": False}
    plain, precise = pair(3, **kwargs)
    shape = {"1x1": (4, 3, 1, 1), "one_value": (1, 3, 1, 1)}.get(case, (2, 3, 5, 4))
    x = torch.randn(shape, dtype=torch.float64 if case == "float64" else torch.float32)
    if case == "float64":
        plain.double()
        precise.double()
    if case != "nchw":
        x = x.contiguous(memory_format=torch.channels_last)
    if case == "eval":
        plain.eval()
        precise.eval()
    if case == "one_value":
        for module in (plain, precise):
            with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
                module(x)
        return
    if case in ("no_affine", "no_running_stats"):
        # Through the float64 path: the same values and gradients up to rounding.
        xs = [x.clone().requires_grad_() for _ in range(2)]
        ys = [precise(xs[0]), plain(xs[1])]
        torch.testing.assert_close(ys[0], ys[1], rtol=1e-5, atol=1e-5)
        grad = torch.randn_like(x)
        for y in ys:
            y.backward(grad)
        torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-4, atol=1e-5)
        for a, b in zip(precise.parameters(), plain.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
        return
    assert torch.equal(precise(x), plain(x))


def test_conversion_keeps_parameters_and_state_dict() -> None:
    model = timm.create_model("resnet18", pretrained=False, features_only=True)
    before = model.state_dict()
    params = list(model.parameters())
    assert use_precise_batch_norm(model) == 20
    assert all(type(m) is not nn.BatchNorm2d for m in model.modules())
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    assert list(model.state_dict()) == list(before)
    buffer = io.BytesIO()
    torch.save(model, buffer)  # the module pickles with its class
    buffer.seek(0)
    assert isinstance(torch.load(buffer, weights_only=False).bn1, PreciseBatchNorm2d)
    assert use_precise_batch_norm(model) == 0


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace's deprecation
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_and_compiled_graphs_see_batchnorm2d() -> None:
    plain, precise = pair(3)
    x = torch.randn(2, 3, 5, 4).contiguous(memory_format=torch.channels_last)
    traced = torch.jit.trace(precise, x, check_trace=False)
    assert "batch_norm" in str(traced.graph)
    compiled = torch.compile(precise, backend="eager", fullgraph=True)  # no graph break
    assert torch.equal(compiled(x), plain(x))


def test_timm_batchnorm_act_keeps_its_activation() -> None:
    torch.manual_seed(0)
    plain = BatchNormAct2d(6, act_layer=nn.SiLU)
    model = nn.Sequential(plain)
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    x = (torch.randn(4, 6, 9, 7) * 3 + 5).contiguous(memory_format=torch.channels_last)
    want = plain(x)
    plain.load_state_dict(state)
    assert use_precise_batch_norm(model) == 1
    assert type(model[0]) is PreciseBatchNormAct2d
    torch.testing.assert_close(model[0](x), want, rtol=1e-5, atol=1e-5)
    assert (want < 0).any()  # SiLU, not ReLU and not nothing


def test_gradients_only_where_asked() -> None:
    _, precise = pair(4)
    precise.weight.requires_grad_(False)
    x = torch.randn(3, 4, 5, 6).contiguous(memory_format=torch.channels_last)
    precise(x).sum().backward()  # x needs no gradient, the weight none either
    assert precise.weight.grad is None and precise.bias.grad is not None
