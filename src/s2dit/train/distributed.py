"""Processes launched by torchrun: the process group, the device, and DDP / FSDP2 wrapping.

Run alone (no ``WORLD_SIZE`` in the environment) the trainer is one plain process with no process group.
Under torchrun each process joins a group (NCCL on GPUs, gloo on CPUs) and the model is wrapped:

* ``ddp``: ``DistributedDataParallel`` (gradients all-reduced to the mean);
* ``fsdp``: FSDP2 ``fully_shard`` on each unit the model names (``fsdp_units()``) and then on the root.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn

from s2dit.errors import S2DitError


@dataclasses.dataclass
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over processes."""
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.size
        return value


def setup(device: str = "auto") -> World:
    """Join the torchrun process group if there is one and pick this process's device."""
    rank, size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda" and not torch.cuda.is_available():
        raise S2DitError("device: cuda was asked for but no GPU is visible")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(minutes=30),
            device_id=dev if use_cuda else None,
        )
    return World(rank, size, local_rank, dev)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, world: World, parallel: str) -> nn.Module:
    """The model as trained: plain (one process), DDP or FSDP2."""
    if not world.distributed:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [world.device.index] if world.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(world.device.type, (world.size,))
    for unit in getattr(model, "fsdp_units", list)():
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def no_sync(model: nn.Module, sync: bool):
    """Skip DDP's gradient all-reduce on the accumulation steps before the last one."""
    if not sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return nullcontext()


def average_gradients(model: nn.Module, world: World) -> None:
    """Average the gradients of a model that is not wrapped by DDP over processes (no-op alone).
    Every process must own the same parameters with gradients (the same step structure)."""
    if not world.distributed:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and hasattr(model, "no_sync") else model
