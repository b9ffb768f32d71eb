"""Loss normalisers shared across data-parallel ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Mean of a 0-dim tensor over the ranks of the default process group.

    Without an initialised group (or with one rank) ``value`` is returned as is.
    The all-reduce runs on the tensor's device without reading it on the host,
    so it adds no host synchronisation; the result carries no gradient.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return value
    world = dist.get_world_size()
    if world == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world
