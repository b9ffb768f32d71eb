"""BatchNorm2d whose channels-last training statistics are as precise as NCHW's.

PyTorch's CPU BatchNorm sums an NCHW channel pairwise, but a channels-last
(NHWC) one element after element in float32: on a detector's first layers
(about 150 000 values per channel) its outputs and gradients are off by 1e-6
to 1e-4 relative, against about 1e-7 in NCHW, and our FCOS's features and
gradients then lie 4 to 5 times farther from float64's than in NCHW (``python
benches/bench_real_data.py precision``). :class:`PreciseBatchNorm2d` replaces
those sums, only where they occur (training with batch statistics, float32
channels-last input on the CPU), by
the native core's float64 ones (``autotimm._native.batch_norm_moments`` and
``batch_norm_grad_sums``); normalising and the input gradient stay PyTorch's
kernels, given the precise statistics. Every
other case (NCHW, CUDA, other dtypes, eval mode, scripting, tracing, export,
``torch.compile``) runs ``nn.BatchNorm2d`` unchanged. Parameters, buffers and
state-dict keys are those of ``nn.BatchNorm2d``; timm's ``BatchNormAct2d`` has
its precise twin, :class:`PreciseBatchNormAct2d`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import BatchNormAct2d
from torch.autograd.function import FunctionCtx, once_differentiable

from autotimm import _native

# The sums run on the calling thread: right after each of its ops, PyTorch's
# OpenMP workers spin for milliseconds, and a pool of ours would compete with
# them for the cores (on 2 cores, two threads made the sums no faster inside a
# training step, and handing them to a one-thread pool doubled their cost).
_THREADS = 1


def _rows(x: torch.Tensor) -> np.ndarray:
    """The values of a channels-last ``[N, C, H, W]`` tensor as a ``(N·H·W, C)``
    array, without a copy (float32, row-major)."""
    n, c, h, w = x.shape
    return x.detach().permute(0, 2, 3, 1).reshape(n * h * w, c).numpy()


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of a float32 channels-last CPU tensor with float64
    statistics and weight/bias gradient sums. Returns ``(y, mean, var)``: the
    output in channels-last and the batch's float64 mean and biased variance
    ``[C]``.

    Normalising and the input gradient are PyTorch's kernels, given the precise
    statistics: the input gradient's own float32 sums only enter it through
    per-channel means of the gradient, which are small against the gradient
    itself, so it comes out as precise as NCHW's (measured against float64); the
    weight and bias gradients are those sums, so they come from the float64 ones.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        moments = _native.batch_norm_moments(_rows(x), _THREADS)
        mean64, var64 = (torch.from_numpy(a) for a in moments)
        invstd64 = (var64 + eps).rsqrt()
        y = F.batch_norm(x, mean64.float(), var64.float(), weight, bias, False, 0.0, eps)
        ctx.save_for_backward(x, weight, mean64, invstd64)  # type: ignore[arg-type]
        ctx.eps = eps  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(mean64, var64)
        return y, mean64, var64

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad_y: torch.Tensor, _mean: torch.Tensor, _var: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, mean64, invstd64 = ctx.saved_tensors  # type: ignore[attr-defined]
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]  # type: ignore[attr-defined]
        grad_y = grad_y.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = grad_b = None
        if needs_x:
            grad_x = torch.ops.aten.native_batch_norm_backward(
                grad_y, x, weight, None, None, mean64.float(), invstd64.float(),
                True, ctx.eps, [True, False, False],  # type: ignore[attr-defined]
            )[0]
        if needs_w or needs_b:
            sums = _native.batch_norm_grad_sums(
                _rows(grad_y), _rows(x), mean64.numpy(), _THREADS
            )
            sum_grad, sum_centered = (torch.from_numpy(a) for a in sums)
            grad_w = (sum_centered * invstd64).float() if needs_w else None
            grad_b = sum_grad.float() if needs_b else None
        return grad_x, grad_w, grad_b, None


def _batch_norm_float64_sums(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn``'s training-mode forward with float64 sums; updates the running
    statistics as ``nn.BatchNorm2d`` does (``momentum``, or the cumulative average
    when it is None, with the unbiased batch variance)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    update = bn.training and bn.track_running_stats
    if update and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    y, mean, var = _ChannelsLastBatchNorm.apply(x, bn.weight, bn.bias, bn.eps)
    if update and bn.running_mean is not None and bn.running_var is not None:
        count = x.numel() // x.size(1)
        with torch.no_grad():
            bn.running_mean.mul_(1.0 - factor).add_(mean.to(bn.running_mean.dtype) * factor)
            unbiased = var * (count / (count - 1))
            bn.running_var.mul_(1.0 - factor).add_(unbiased.to(bn.running_var.dtype) * factor)
    return y


def _uses_batch_stats(bn: nn.BatchNorm2d) -> bool:
    return bn.training or (bn.running_mean is None and bn.running_var is None)


class PreciseBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with float64 batch statistics and gradient sums for a
    float32 channels-last input on the CPU in training (the module docstring says
    why); the same module as ``nn.BatchNorm2d`` in every other case.

    Input and output: ``[N, C, H, W]``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (_uses_batch_stats(self) and _takes_native_sums(input)):
            return super().forward(input)
        return _batch_norm_float64_sums(self, input)


class PreciseBatchNormAct2d(BatchNormAct2d):
    """timm's ``BatchNormAct2d`` (BatchNorm, dropout, activation in one module) with
    the BatchNorm of :class:`PreciseBatchNorm2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (_uses_batch_stats(self) and _takes_native_sums(x)):
            return super().forward(x)
        return self.act(self.drop(_batch_norm_float64_sums(self, x)))


def _takes_native_sums(x: torch.Tensor) -> bool:
    """Whether the float64 path applies: a float32 4-D CPU tensor laid out
    channels-last (and not also NCHW-contiguous, as 1x1 maps are), more than one
    value per channel, in eager mode."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    return (
        x.dim() == 4
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
        and x.numel() > x.size(1)
        and not torch.onnx.is_in_onnx_export()
    )


_PRECISE = {nn.BatchNorm2d: PreciseBatchNorm2d, BatchNormAct2d: PreciseBatchNormAct2d}


def use_precise_batch_norm(module: nn.Module) -> int:
    """Turn every ``nn.BatchNorm2d`` and timm ``BatchNormAct2d`` inside ``module``
    into its precise subclass, in place: the same parameters, buffers and
    state-dict keys, only the class changes. Other subclasses (SyncBatchNorm,
    timm's frozen or split BatchNorms) are left as they are. Returns how many
    were converted."""
    converted = 0
    for sub in module.modules():
        precise = _PRECISE.get(type(sub))
        if precise is not None:
            sub.__class__ = precise
            converted += 1
    return converted
