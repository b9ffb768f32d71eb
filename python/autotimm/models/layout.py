"""Memory layout of the convolution weights: channels-last (NHWC) on request.

oneDNN, PyTorch's CPU convolution library, runs a convolution in channels-last
when its input or its weight is channels-last, and its NHWC kernels are faster
than the NCHW ones for the detector's convolutions (measured on BCCD, resnet18
FPN at 320x240: about 10% less time per training step; see the README). The
layout then flows from layer to layer, so storing the 4-D weights channels-last
is all it takes: no input needs converting and the state dict keeps its keys,
shapes and values.

It is not the default: PyTorch's CPU BatchNorm in channels-last accumulates its
batch statistics in float32, with relative errors of 4e-6 to 2e-4 where NCHW's
are 4e-8 to 2e-6 (more values per channel, or a larger mean against the spread,
make it worse), and a from-scratch resnet18's weight gradients then differ
from float64's by about 5e-3 instead of 1e-6.
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
