"""The runs of a stacked group: each member a normal run, trained in one :class:`Stack`.

Every member goes through the lifecycle of :mod:`mlp_sweep.job` (``begin``, ``end_epoch``,
``complete`` or ``stopped``), so its folder holds what a solo run leaves; only the arithmetic
is shared. A member that diverges, is pruned, or has trained its own ``epochs`` leaves the
stack at the end of that epoch; the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from mlp_sweep import job
from mlp_sweep.config import hidden_sizes
from mlp_sweep.model import MLP
from mlp_sweep.stacked import Stack
from mlp_sweep.train import epoch_record

log = logging.getLogger(__name__)

Outcome = float | BaseException  # a member's objective, or the error it ended with


def group_key(cfg: DictConfig) -> tuple[Any, ...]:
    """What members of one group share: one data set and split, one batch order length, one
    device and thread count, one depth, activation and loss. Widths, seeds, init, epochs and
    every optimizer setting may differ.

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"data": {"name": "mnist_5k", "val_size": 500, "root": None},
    ...     "batch_size": 100, "device": "cpu", "threads": None, "hidden": [50, 20],
    ...     "model": {"activation": "relu", "name": "softmax_ce"}})
    >>> group_key(cfg)
    ('mnist_5k', 500, None, 100, 'cpu', None, 2, 'relu', 'softmax_ce')
    """
    return (
        cfg.data.name,
        cfg.data.val_size,
        cfg.data.root,
        cfg.batch_size,
        cfg.device,
        cfg.threads,
        len(hidden_sizes(cfg.hidden)),
        cfg.model.activation,
        cfg.model.name,
    )


@dataclass
class Member:
    life: job.Life
    model: MLP
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    handler: logging.Handler
    outcome: Outcome | None = None
    done: bool = field(default=False)

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """Log lines written meanwhile go to this member's mlp_sweep.log too."""
        root = logging.getLogger()
        root.addHandler(self.handler)
        try:
            yield
        finally:
            root.removeHandler(self.handler)

    def end(self, err: BaseException) -> None:
        """Record how the member stopped (:func:`job.stopped`); keep what it returns or
        raises as its outcome."""
        self.done = True
        if not hasattr(self.life, "record"):  # it failed before its folder was taken
            self.outcome = err
            return
        with self.logging():
            try:
                self.outcome = job.stopped(self.life, err)
            except BaseException as raised:
                self.outcome = raised


def run_group(lives: list[job.Life], log_format: str) -> list[Outcome]:
    """Train the runs ``lives`` (prepared, none settled, sharing :func:`group_key`) stacked;
    return each one's objective or error, in order. Ctrl-C marks every running member
    interrupted, then propagates."""
    first = lives[0].cfg
    device = lives[0].device
    splits = job.load_data(first, device)
    loss_name = first.model.name
    members = []
    for life in lives:
        model, optimizer, generator = job.build(life.cfg, splits, device)
        handler = logging.FileHandler(life.out / f"{life.hydra_cfg.job.name}.log", delay=True)
        handler.setFormatter(logging.Formatter(log_format))
        members.append(Member(life, model, optimizer, generator, handler))
    stack = Stack([m.model for m in members], first.model.activation)
    together = {"group": [str(life.out) for life in lives], "members": len(lives)}
    for m in members:
        try:
            with m.logging():
                m.life.schedule = job.schedule(m.life.cfg, m.optimizer, splits)
                job.begin(m.life, m.model, m.optimizer, m.generator, stacked=together)
        except Exception as err:
            m.end(err)
    try:
        _train(members, stack, splits, loss_name)
    except KeyboardInterrupt as err:
        for m in members:
            if not m.done:
                m.end(err)
        raise
    finally:
        for m in members:
            m.handler.close()
    return [m.outcome for m in members]


def _train(members: list[Member], stack: Stack, splits: Any, loss_name: str) -> None:
    batch_size = members[0].life.cfg.batch_size
    _finish(stack, members, splits, loss_name)  # continued from a checkpoint of the last epoch
    active = _leave(stack, members)
    while active:
        tic = time.perf_counter()
        train_loss, train_acc = stack.train_epoch(
            loss_name,
            [m.optimizer for m in active],
            splits.train,
            batch_size,
            [m.generator for m in active],
            [m.life.schedule for m in active],
        )
        val_loss, val_acc = stack.evaluate(loss_name, splits.val)
        for m in active:  # as train.fit does: after the epoch, before it is recorded
            if m.life.schedule is not None:
                m.life.schedule.after_epoch()
        # Each member's share of the group's epoch: the runs of a sweep add up to its time.
        seconds = (time.perf_counter() - tic) / len(active)
        for i, m in enumerate(active):
            epoch = m.life.record.data["epochs_run"] + 1
            try:
                with m.logging():
                    record = epoch_record(
                        epoch,
                        m.life.cfg.epochs,
                        train_loss[i],
                        train_acc[i],
                        val_loss[i],
                        val_acc[i],
                        seconds,
                    )
                    job.end_epoch(m.life, record, m.model, m.optimizer, m.generator)
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # diverged, pruned, or a write that failed
                m.end(err)
        _finish(stack, active, splits, loss_name)
        active = _leave(stack, active)


def _finish(stack: Stack, active: list[Member], splits: Any, loss_name: str) -> None:
    """Complete the members that have trained all their epochs: evaluate, then write."""
    ready = [
        i
        for i, m in enumerate(active)
        if not m.done and m.life.record.data["epochs_run"] >= m.life.cfg.epochs
    ]
    if not ready:
        return
    final: dict[str, list[float]] = {}
    for split in ("train", "val", "test"):
        final[f"{split}_loss"], final[f"{split}_acc"] = stack.evaluate(
            loss_name, getattr(splits, split)
        )
    for i in ready:
        m = active[i]
        with m.logging():
            try:
                m.outcome = job.complete(m.life, m.model, {k: v[i] for k, v in final.items()})
            except BaseException as raised:
                m.outcome = raised
        m.done = True


def _leave(stack: Stack, active: list[Member]) -> list[Member]:
    """The members still training; the others leave the stack."""
    staying = [i for i, m in enumerate(active) if not m.done]
    if len(staying) < len(active):
        stack.keep(staying)
    return [active[i] for i in staying]
