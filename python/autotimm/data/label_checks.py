"""Class labels checked against ``num_classes``, with errors that name the image.

A label outside ``[0, num_classes)`` would otherwise train silently: the focal
loss makes it a positive with an all-zero one-hot row. The checks run where the
labels are still on the CPU (dataset items, the collate, and the model's
``on_before_batch_transfer``), so they cost no device synchronisation; on an
accelerator, :func:`assert_labels_in_range_async` is the backstop for batches
that arrive there directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["LabelRangeError", "assert_labels_in_range_async", "check_labels"]


class LabelRangeError(ValueError):
    """A class label outside ``[0, num_classes)``; the message names the image."""


def _out_of_range(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return (labels < 0) | (labels >= num_classes)


def check_labels(
    labels: Sequence[torch.Tensor],
    num_classes: int,
    image_names: Sequence[Any] | None = None,
    where: str = "",
) -> None:
    """Raise :class:`LabelRangeError` if a label is outside ``[0, num_classes)``.

    Only CPU tensors are read (accelerator tensors are skipped: reading them would
    synchronise the device; see :func:`assert_labels_in_range_async`).

    Parameters
    ----------
    labels:
        Per image, an integer tensor ``[N_i]``.
    num_classes:
        Number of classes, >= 1.
    image_names:
        Per image, what the message calls it (an image id, a file); default the index.
    where:
        Prefix of the message (e.g. the dataset file or ``"batch"``).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    cpu = [lab for lab in labels if lab.device.type == "cpu"]
    if not cpu or sum(int(lab.numel()) for lab in cpu) == 0:
        return
    # numpy reads CPU memory in place: no torch dispatch and no ``aten::item``, so the
    # training step stays free of anything that would be a device synchronisation
    flat = np.concatenate([lab.detach().reshape(-1).numpy() for lab in cpu])
    if not ((flat < 0) | (flat >= num_classes)).any():
        return
    for i, lab in enumerate(labels):
        if lab.device.type != "cpu":
            continue
        bad = _out_of_range(lab.reshape(-1), num_classes)
        if bool(bad.any()):
            name = image_names[i] if image_names is not None else i
            values = sorted({int(v) for v in lab.reshape(-1)[bad].tolist()})
            prefix = f"{where}: " if where else ""
            raise LabelRangeError(
                f"{prefix}image {name} has class label(s) {values} outside [0, {num_classes}) "
                f"(num_classes={num_classes}); the model's num_classes must cover every "
                "label of the data, and labels must be contiguous class indices"
            )


def assert_labels_in_range_async(labels: torch.Tensor, num_classes: int) -> None:
    """On an accelerator, a device-side assertion (no host synchronisation) that all
    ``labels`` are in ``[0, num_classes)``; the failure surfaces at the next
    synchronisation and does not name the image. No-op on the CPU (checked by
    :func:`check_labels` instead) and for empty tensors."""
    if labels.device.type == "cpu" or labels.numel() == 0:
        return
    ok = ~_out_of_range(labels, num_classes).any()
    torch._assert_async(ok, f"class label outside [0, {num_classes}) (num_classes)")
