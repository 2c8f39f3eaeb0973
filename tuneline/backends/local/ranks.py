"""Which training process this is, under ``tune.distributed`` (torchrun sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``), and the two collectives Tuneline's callbacks need.

One process (no torchrun) is :data:`SINGLE`: rank 0 of 1, whose collectives do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SINGLE", "Ranks"]


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Ranks:
        return cls(
            rank=int(env.get("RANK", 0)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
        )

    @property
    def primary(self) -> bool:
        """Rank 0: the one process that writes metrics, status, checkpoints and the model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any: a decision all processes take together."""
        if not self.distributed:
            return flag
        import torch
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        vote = torch.tensor([1 if flag else 0], device=device)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        return bool(vote.item())

    def broadcast(self, value: object) -> object:
        """Rank 0's ``value``, on every rank."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Ranks()
