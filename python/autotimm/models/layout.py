"""Memory layout of the convolution weights: channels-last (NHWC) on the CPU.

oneDNN, PyTorch's CPU convolution library, runs a convolution in channels-last
when its input or its weight is channels-last, and its NHWC kernels are faster
than the NCHW ones for the detector's forward convolutions and max-pooling
(BCCD, resnet18-FPN at 320x240; the README has the step times). The layout then
flows from layer to layer, so storing the 4-D weights channels-last is all it
takes: no input needs converting and the state dict keeps its keys, shapes and
values.

PyTorch's CPU BatchNorm accumulates channels-last statistics in float32 (errors
of 4e-6 to 2e-4 where NCHW's are 4e-8 to 2e-6); the detector's backbone uses
``autotimm.models.batchnorm.PreciseBatchNorm2d``, which sums them in float64,
so channels-last training is about as precise as NCHW (``python
benches/bench_real_data.py precision``) and is the CPU default.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def conv_memory_format(device: torch.device, channels_last: bool | None) -> torch.memory_format:
    """Layout of the 4-D weights on ``device``: ``channels_last`` True or False forces
    it; None chooses channels-last on the CPU and PyTorch's default elsewhere (on CUDA
    the gain depends on the precision and the GPU, unmeasured here)."""
    use = device.type == "cpu" if channels_last is None else channels_last
    return torch.channels_last if use else torch.contiguous_format


def set_conv_layout(module: nn.Module, memory_format: torch.memory_format) -> None:
    """Store every 4-D parameter of ``module`` in ``memory_format``, in place (the
    parameters stay the same objects, so optimizers keep tracking them)."""
    with torch.no_grad():
        for param in module.parameters():
            if param.dim() == 4 and not param.is_contiguous(memory_format=memory_format):
                param.data = param.data.contiguous(memory_format=memory_format)
