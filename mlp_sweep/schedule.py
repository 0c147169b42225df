"""Learning-rate schedules: the ``scheduler`` config built over the optimizer, and when it steps.

A scheduler config is a ``_target_`` from ``torch.optim.lr_scheduler`` plus one key of ours,
``interval``: ``epoch`` steps it after every epoch (cosine, step), ``batch`` after every
optimizer step (one-cycle), and then the run passes it ``steps_per_epoch``. Its state goes into
each checkpoint with the optimizer's, so a resumed run follows the same schedule.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LRScheduler

from mlp_sweep.errors import ConfigError, one_line

# What a scheduler config may build with `_target_` (Hydra's execution whitelist), given at the
# call so that jobs in other processes check it too.
SCHEDULERS = ("torch.optim.lr_scheduler.*",)


class Schedule:
    """A learning-rate scheduler and when it steps: after each batch, or after each epoch."""

    def __init__(self, scheduler: LRScheduler, interval: str) -> None:
        self.scheduler = scheduler
        self.interval = interval

    def after_batch(self) -> None:
        if self.interval == "batch":
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.interval == "epoch":
            self.scheduler.step()


def build_schedule(
    cfg: DictConfig | None, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
) -> Schedule | None:
    """The schedule a ``scheduler`` config describes over ``optimizer``; None for no config.

    Raises ConfigError if the scheduler cannot be built, or fails within the steps of the
    run's first epochs: most schedulers check their arguments only when they step (StepLR's
    ``step_size=0``), so the schedule is rehearsed first on a copy of the optimizer.

    >>> model = torch.nn.Linear(2, 1)
    >>> sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> cosine = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True,
    ...           "T_max": 10, "interval": "epoch"}
    >>> build_schedule(OmegaConf.create(cosine), sgd, steps_per_epoch=35, epochs=10).scheduler.T_max
    10
    """
    if cfg is None:
        return None
    settings: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)
    interval = settings.pop("interval", "epoch")
    extra = {"steps_per_epoch": steps_per_epoch} if interval == "batch" else {}
    target = settings.get("_target_")
    try:
        make = instantiate(settings, _execution_whitelist_=SCHEDULERS)
        # A copy made before the scheduler changes the optimizer's learning rate.
        stand_in = copy.deepcopy(optimizer)
        scheduler = make(optimizer, **extra)
    except (InstantiationException, TypeError, ValueError) as err:
        raise ConfigError(f"scheduler ({target}) cannot be built: {one_line(err)}") from None
    steps = epochs if interval == "epoch" else steps_per_epoch * min(epochs, 2)
    _rehearse(make, stand_in, extra, steps, target)
    return Schedule(scheduler, interval)


def _rehearse(
    make: Any, stand_in: torch.optim.Optimizer, extra: dict[str, Any], steps: int, target: str
) -> None:
    """Step another scheduler of the same config over ``stand_in``, a copy of the optimizer."""
    try:
        scheduler = make(stand_in, **extra)
        for _ in range(steps):
            stand_in.step()  # nothing to update: no gradients
            scheduler.step()
    except Exception as err:
        raise ConfigError(
            f"scheduler ({target}) fails within the run's first {steps} steps: "
            f"{type(err).__name__}: {one_line(err)}"
        ) from None
