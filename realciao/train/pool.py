"""A pool of training pairs that mixes batches, bucketed by GT size.

Each batch has one scale, so its pairs share a size; pairs wait in the bucket of their
size and are swapped into later batches of that size. The pool is part of the resume
state. Total size is bounded; the oldest pairs leave first.
"""

from __future__ import annotations

import torch


class PairPool:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.buckets: dict[str, dict[str, torch.Tensor]] = {}
        self.order: list[str] = []  # bucket keys by last insertion, oldest first

    def __len__(self) -> int:
        return sum(next(iter(b.values())).shape[0] for b in self.buckets.values())

    def mix(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Swap each sample of ``batch`` with a random pooled pair of the same size."""
        if self.capacity <= 0:
            return batch
        key = "x".join(str(s) for s in batch["gt"].shape[-2:]) + "|" + "x".join(str(s) for s in batch["lq"].shape[-2:])
        size = batch["gt"].shape[0]
        bucket = self.buckets.get(key)
        if bucket is None or next(iter(bucket.values())).shape[0] < size:
            stored = {k: v.detach().clone() for k, v in batch.items()}
            self.buckets[key] = stored if bucket is None else {k: torch.cat([bucket[k], stored[k]]) for k in bucket}
            self._touch(key)
            self._evict()
            return batch
        count = next(iter(bucket.values())).shape[0]
        picks = torch.randperm(count, generator=generator, device="cpu")[:size].to(batch["gt"].device)
        out = {k: bucket[k][picks].clone() for k in batch}
        for k in batch:
            bucket[k][picks] = batch[k].detach()
        return out

    def _touch(self, key: str) -> None:
        if key in self.order:
            self.order.remove(key)
        self.order.append(key)

    def _evict(self) -> None:
        while len(self) > self.capacity and self.order:
            oldest = self.order[0]
            bucket = self.buckets[oldest]
            excess = len(self) - self.capacity
            count = next(iter(bucket.values())).shape[0]
            if excess >= count:
                del self.buckets[oldest]
                self.order.pop(0)
            else:
                self.buckets[oldest] = {k: v[excess:] for k, v in bucket.items()}

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "order": list(self.order),
                "buckets": {k: {n: t.cpu() for n, t in b.items()} for k, b in self.buckets.items()}}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.capacity = state["capacity"]
        self.order = list(state["order"])
        self.buckets = {k: {n: t.to(device) for n, t in b.items()} for k, b in state["buckets"].items()}
