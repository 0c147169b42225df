"""The runs of a stacked group: each member a normal run, trained in one :class:`Stack`.

Every member goes through the lifecycle of :mod:`mlp_sweep.job` (``begin``, ``end_epoch``,
``complete`` or ``stopped``), so its folder holds what a solo run leaves; only the arithmetic
is shared. A member that diverges, is pruned, or has trained its own ``epochs`` leaves the
stack at the end of that epoch; the others go on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
import warnings
from collections.abc import Callable, Iterator
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


def partition(cfgs: dict[int, DictConfig], max_members: int, max_padding: float) -> list[list[int]]:
    """The groups that the jobs ``cfgs`` (by job number) train in: jobs sharing
    :func:`group_key`, narrowest first, at most ``max_members`` to a group, and no wider than
    keeps the group's padded weights (every member as wide as the widest) within
    ``max_padding`` times its members' own: a member padded to three times its weights does
    three times its own arithmetic, more than stacking wins back on a CPU.

    >>> from omegaconf import OmegaConf
    >>> base = {"data": {"name": "mnist_5k", "val_size": 500, "root": None}, "batch_size": 100,
    ...     "device": "cpu", "threads": None, "model": {"activation": "sigmoid", "name": "x"}}
    >>> widths = [200, 50, 100]  # 50 padded to 200 would be 3.4x its weights
    >>> cfgs = {i: OmegaConf.create({**base, "hidden": h}) for i, h in enumerate(widths)}
    >>> partition(cfgs, max_members=16, max_padding=1.5)
    [[1, 2], [0]]
    >>> partition(cfgs, max_members=16, max_padding=2)
    [[1, 2, 0]]
    """
    by_key: dict[tuple, list[int]] = {}
    for num, cfg in cfgs.items():
        by_key.setdefault(group_key(cfg), []).append(num)
    groups: list[list[int]] = []
    for nums in by_key.values():
        widths = {n: hidden_sizes(cfgs[n].hidden) for n in nums}
        group: list[int] = []
        for num in sorted(nums, key=lambda n: (_weights(widths[n]), n)):
            grown = [*group, num]
            widest = [max(w) for w in zip(*(widths[n] for n in grown))]
            padded = len(grown) * _weights(widest)
            if group and (
                len(grown) > max_members
                or padded > max_padding * sum(_weights(widths[n]) for n in grown)
            ):
                groups.append(group)
                grown = [num]
            group = grown
        groups.append(group)
    return groups


def _weights(hidden: list[int]) -> int:
    """The weights of a network of these hidden widths (every data set here has 784 inputs
    and 10 classes)."""
    return sum(a * b for a, b in itertools.pairwise([784, *hidden, 10]))


@dataclass
class Member:
    index: int  # its place in the group
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


def run_group(
    lives: list[job.Life], log_format: str, ended: Callable[[int, Outcome], None]
) -> None:
    """Train the runs ``lives`` (prepared, none settled, sharing :func:`group_key`) stacked,
    calling ``ended(i, outcome)`` with ``lives[i]``'s objective or error as soon as it ends,
    while others may still train. Ctrl-C marks every running member interrupted, then
    propagates."""
    first = lives[0].cfg
    device = lives[0].device
    splits = job.load_data(first, device)
    loss_name = first.model.name
    members = []
    for index, life in enumerate(lives):
        model, optimizer, generator = job.build(life.cfg, splits, device)
        handler = logging.FileHandler(life.out / f"{life.hydra_cfg.job.name}.log", delay=True)
        handler.setFormatter(logging.Formatter(log_format))
        members.append(Member(index, life, model, optimizer, generator, handler))
    together = {"group": [str(life.out) for life in lives], "members": len(lives)}
    for m in members:
        try:
            with m.logging():
                m.life.schedule = job.schedule(m.life.cfg, m.optimizer, splits)
                job.begin(m.life, m.model, m.optimizer, m.generator, stacked=together)
        except Exception as err:
            m.end(err)
    for m in members:
        if m.done:
            ended(m.index, m.outcome)
    # Stacked once every member holds its checkpoint's weights and optimizer state.
    live = [m for m in members if not m.done]
    try:
        with warnings.catch_warnings():
            # A member's scheduler looks for a step of the member's own optimizer; the
            # group's stepper made it (stacked.one_step).
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
            if live:
                optimizers = [m.optimizer for m in live]
                stack = Stack([m.model for m in live], first.model.activation, optimizers)
                _train(live, stack, splits, loss_name, ended)
    except KeyboardInterrupt as err:
        for m in members:
            if not m.done:
                m.end(err)
        raise
    finally:
        for m in members:
            m.handler.close()


def _train(
    members: list[Member],
    stack: Stack,
    splits: Any,
    loss_name: str,
    ended: Callable[[int, Outcome], None],
) -> None:
    batch_size = members[0].life.cfg.batch_size
    _finish(stack, members, splits, loss_name)  # continued from a checkpoint of the last epoch
    active = _leave(stack, members, ended)
    while active:
        tic = time.perf_counter()
        train_loss, train_acc = stack.train_epoch(
            loss_name,
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
        active = _leave(stack, active, ended)


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


def _leave(
    stack: Stack, active: list[Member], ended: Callable[[int, Outcome], None]
) -> list[Member]:
    """The members still training; the others leave the stack, and are reported."""
    for m in active:
        if m.done:
            ended(m.index, m.outcome)
    staying = [i for i, m in enumerate(active) if not m.done]
    if len(staying) < len(active):
        stack.keep(staying)
    return [active[i] for i in staying]
