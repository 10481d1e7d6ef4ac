"""Random draws for a batch: every value is drawn per sample from an explicit generator.

Numbers are drawn on the generator's device and moved to the requested device, so a CPU
generator drives CUDA images too (slower, still deterministic) and no global RNG is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import torch


@dataclass(frozen=True)
class Constant:
    value: float


@dataclass(frozen=True)
class Uniform:
    """U(low, high)."""

    low: float
    high: float


@dataclass(frozen=True)
class IntegerUniform:
    """An integer from low to high, both included (BSRGAN's ``randint``)."""

    low: int
    high: int


@dataclass(frozen=True)
class InverseUniform:
    """1 / U(low, high): BSRGAN draws its downscale factor this way."""

    low: float
    high: float


@dataclass(frozen=True)
class Mixture:
    """One component per sample, chosen with ``probs``, then drawn from it."""

    components: tuple[Distribution, ...]
    probs: tuple[float, ...]


Distribution = Union[Constant, Uniform, IntegerUniform, InverseUniform, Mixture]


@dataclass(frozen=True)
class OddRange:
    """An odd kernel size from low to high (both odd, included), uniformly."""

    low: int
    high: int


def make_generator(device: torch.device | str = "cpu", seed: int | None = None) -> torch.Generator:
    """A generator on ``device``; without a seed, one from the OS entropy pool (not the global RNG)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    values = torch.rand(n, generator=generator, device=generator.device)
    return (low + (high - low) * values).to(device)


def bernoulli(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A bool per sample, True with probability ``p``."""
    return torch.rand(n, generator=generator, device=generator.device).to(device) < p


def categorical(
    n: int, probs: Sequence[float], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """An index into ``probs`` per sample (long)."""
    cumulative = torch.tensor(list(probs), dtype=torch.float64).cumsum(0)
    cumulative = cumulative / cumulative[-1]
    values = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64).cpu()
    index = torch.searchsorted(cumulative, values, right=True).clamp_(max=len(probs) - 1)
    return index.to(device)


def randn(shape: Sequence[int], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator, device=generator.device).to(device)


def draw(dist: Distribution, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` float32 values of ``dist``, one per sample."""
    if isinstance(dist, Constant):
        return torch.full((n,), float(dist.value), device=device)
    if isinstance(dist, Uniform):
        return uniform(n, dist.low, dist.high, generator, device)
    if isinstance(dist, IntegerUniform):
        values = torch.randint(dist.low, dist.high + 1, (n,), generator=generator, device=generator.device)
        return values.to(device=device, dtype=torch.float32)
    if isinstance(dist, InverseUniform):
        return 1.0 / uniform(n, dist.low, dist.high, generator, device)
    if isinstance(dist, Mixture):
        choice = categorical(n, dist.probs, generator, device)
        values = torch.zeros(n, device=device)
        for index, component in enumerate(dist.components):
            values = torch.where(choice == index, draw(component, n, generator, device), values)
        return values
    raise TypeError(f"not a distribution: {dist!r}")


def draw_odd(sizes: OddRange, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` odd kernel sizes (long)."""
    count = (sizes.high - sizes.low) // 2 + 1
    steps = torch.randint(0, count, (n,), generator=generator, device=generator.device).to(device)
    return sizes.low + 2 * steps


def permutations(n: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of ``range(length)`` per sample, on the CPU (n, length)."""
    keys = torch.rand(n, length, generator=generator, device=generator.device).cpu()
    return keys.argsort(dim=1)
