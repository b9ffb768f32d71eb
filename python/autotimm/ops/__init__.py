"""Torch-facing detection ops.

CPU tensors run on the native core (``autotimm._native``, GIL released); CUDA
tensors run the torch implementation, which is also the reference in tests.
"""

from autotimm.ops.fcos_targets import fcos_targets
from autotimm.ops.nms import batched_nms, nms

__all__ = ["batched_nms", "fcos_targets", "nms"]
