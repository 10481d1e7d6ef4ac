"""Optimisers by name and learning-rate schedules with warm-up, for the generator and the
discriminator alike.

Any ``torch.optim`` class can be named (``Adam``, ``AdamW``, ``SGD``, ``RMSprop``...);
``lr``, ``betas`` and ``weight_decay`` are options of their own, and any other constructor
argument goes in ``args``, checked against the class's signature when the options load.
A schedule is a pure function of the iteration (constant, multistep or cosine, after an
optional linear warm-up), so its whole state is the iteration count.
"""

from __future__ import annotations

import inspect
import math
from functools import partial

import torch

# arguments realciao sets itself, or that change how the step runs rather than what it computes
RESERVED_ARGS = {"params", "lr", "betas", "weight_decay", "foreach", "fused", "capturable", "differentiable"}


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    candidate = getattr(torch.optim, name, None)
    if not (isinstance(candidate, type) and issubclass(candidate, torch.optim.Optimizer)):
        known = sorted(n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
                       and issubclass(getattr(torch.optim, n), torch.optim.Optimizer) and n != "Optimizer")
        raise ValueError(f"type: expected a torch.optim optimiser ({', '.join(known)}), got {name!r}")
    return candidate


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (tuple, list)):
        return "list"
    return "any"


def check_optimizer_options(options) -> None:
    """``options`` (an ``OptimizerOptions``) against the named class: betas only where the class
    takes them, ``args`` only its other arguments, each of the type of its default."""
    cls = optimizer_class(options.type)
    parameters = inspect.signature(cls).parameters
    if "betas" in options.model_fields_set and "betas" not in parameters:
        raise ValueError(f"betas: {options.type} takes no betas")
    if options.weight_decay and "weight_decay" not in parameters:
        raise ValueError(f"weight_decay: {options.type} takes no weight_decay")
    for name, value in options.args.items():
        if name in RESERVED_ARGS or name not in parameters:
            allowed = sorted(p for p in parameters if p not in RESERVED_ARGS)
            raise ValueError(f"args.{name}: not an argument of {options.type} (it takes {allowed})")
        default = parameters[name].default
        expected = _kind(default)
        if default is not None and expected != "any" and _kind(value) != expected:
            raise ValueError(f"args.{name}: expected a {expected} like {options.type}'s default {default!r}, "
                             f"got {value!r}")


def trainable_groups(generator: torch.nn.Module, freeze: list[str] | None, encoder_lr: float | None) -> list:
    """The generator's parameters as the optimiser sees them: a frozen encoder left out (and
    needing no gradients, so backward stops at the upsampler); the encoder in a group of its
    own when it has its own learning rate. Without either, the plain parameter list."""
    encoder, freeze = list(generator.encoder.parameters()), freeze or []
    if "encoder" in freeze:
        for parameter in encoder:
            parameter.requires_grad_(False)
    if "encoder" not in freeze and encoder_lr is None:
        return list(generator.parameters())
    owned = {id(p) for p in encoder}
    rest = [p for p in generator.parameters() if id(p) not in owned]
    if "encoder" in freeze:
        return [{"params": rest}]
    return [{"params": rest}, {"params": encoder, "lr": encoder_lr}]  # group 0 carries optimizer.lr


def build_optimizer(parameters, options) -> torch.optim.Optimizer:
    cls = optimizer_class(options.type)
    accepted = inspect.signature(cls).parameters
    kwargs = {"lr": options.lr, **options.args}
    if "betas" in accepted:
        kwargs["betas"] = tuple(options.betas)
    if "weight_decay" in accepted:
        kwargs["weight_decay"] = options.weight_decay
    return cls(parameters, **kwargs)


def lr_factor(step: int, schedule, total: int, base_lr: float) -> float:
    """The learning rate at optimiser step ``step`` (0-based), as a factor of the base lr."""
    warmup = schedule.warmup_iterations
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule.type == "multistep":
        return schedule.gamma ** sum(1 for milestone in schedule.milestones if milestone <= step)
    if schedule.type == "cosine":
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
        floor = schedule.min_lr / base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, schedule, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    base_lr = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, schedule=schedule, total=total,
                                                                base_lr=base_lr))
