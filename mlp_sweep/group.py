"""The runs of a stacked group: each member a normal run, trained in one :class:`Stack`.

Every member goes through the lifecycle of :mod:`mlp_sweep.job` (``begin``, ``end_epoch``,
``complete`` or ``stopped``), so its folder holds what a solo run leaves; only the arithmetic
is shared. A member that diverges, is pruned, or has trained its own ``epochs`` leaves the
stack at the end of that epoch; the others go on. A job whose settings are not shown to
agree stacked (:func:`solo_reason`) trains alone, through the solo run's own loop
(:func:`run_solo`).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import compose, console, job
from mlp_sweep.config import hidden_sizes, show
from mlp_sweep.errors import one_line
from mlp_sweep.model import MLP, count_params
from mlp_sweep.stacked import Stack
from mlp_sweep.train import epoch_record

log = logging.getLogger(__name__)

Outcome = float | BaseException  # a member's objective, or the error it ended with

# The optimizers, and their arguments, whose stacked step is shown to equal a solo run's
# (tests/test_stacked_agreement.py). Any other class, or another argument at other than its
# default (``fused=true``: torch's fused step is wrong on the strided views a member's
# parameters are), trains solo. An implementation switch set to off is its default.
_SWITCHES = frozenset({"fused", "capturable", "differentiable"})
STACKED_OPTIMIZERS: dict[type[torch.optim.Optimizer], frozenset[str]] = {
    torch.optim.SGD: frozenset(
        {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach"}
    ),
    torch.optim.Adam: frozenset(
        {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach"}
    ),
    torch.optim.AdamW: frozenset(
        {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach"}
    ),
}


def solo_reason(cfg: DictConfig) -> str | None:
    """Why the job ``cfg`` trains solo rather than stacked, or None if it stacks: its
    optimizer is not in :data:`STACKED_OPTIMIZERS`, or is given an argument not listed there
    (at a value other than the class's default; ``fused``, ``capturable`` or
    ``differentiable`` set to false or null count as their default).

    >>> from omegaconf import OmegaConf
    >>> adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
    >>> solo_reason(OmegaConf.create({"optimizer": adam})) is None
    True
    >>> solo_reason(OmegaConf.create({"optimizer": {**adam, "fused": True}}))
    'optimizer.fused=true is not among the arguments of torch.optim.Adam known to train stacked'
    """
    target = cfg.optimizer._target_
    cls = get_class(target)
    allowed = STACKED_OPTIMIZERS.get(cls)
    if allowed is None:
        known = ", ".join(f"torch.optim.{c.__name__}" for c in STACKED_OPTIMIZERS)
        return f"optimizer {target} is not among those known to train stacked ({known})"
    defaults = inspect.signature(cls).parameters
    for key, value in cfg.optimizer.items():
        if str(key).startswith("_") or key in allowed or (key in _SWITCHES and not value):
            continue
        if key not in defaults or value != defaults[key].default:
            return (
                f"optimizer.{key}={_written(value)} is not among the arguments of {target} "
                "known to train stacked"
            )
    return None


def _written(value: Any) -> str:
    """A config value as an override writes it: true, false and null as in a config."""
    return value if isinstance(value, str) else show(value)


def group_key(cfg: DictConfig) -> tuple[Any, ...]:
    """What members of one group share: one data set and split (its whole ``data`` config),
    one batch order length, one device and thread count, one depth, activation and loss.
    Widths, seeds, init, epochs and every optimizer setting that trains stacked
    (:func:`solo_reason`) may differ.

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"data": {"name": "mnist_5k", "val_size": 500},
    ...     "batch_size": 100, "device": "cpu", "threads": None, "hidden": [50, 20],
    ...     "model": {"activation": "relu", "name": "softmax_ce"}})
    >>> group_key(cfg)
    ('{"name": "mnist_5k", "val_size": 500}', 100, 'cpu', None, 2, 'relu', 'softmax_ce')
    """
    return (
        json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True),
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
    three times its own arithmetic, more than stacking wins back on a CPU. The weights count
    the data set's own inputs and classes (:func:`mlp_sweep.data.dims`). A job with a
    :func:`solo_reason` is a group of its own, after the others.

    >>> from omegaconf import OmegaConf
    >>> base = {"data": {"name": "mnist_5k", "val_size": 500}, "batch_size": 100,
    ...     "device": "cpu", "threads": None, "model": {"activation": "sigmoid", "name": "x"},
    ...     "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}}
    >>> widths = [200, 50, 100]  # 50 padded to 200 would be 3.4x its weights
    >>> cfgs = {i: OmegaConf.create({**base, "hidden": h}) for i, h in enumerate(widths)}
    >>> partition(cfgs, max_members=16, max_padding=1.5)
    [[1, 2], [0]]
    >>> partition(cfgs, max_members=16, max_padding=2)
    [[1, 2, 0]]
    """
    from mlp_sweep import data

    by_key: dict[tuple, list[int]] = {}
    alone = []
    for num, cfg in cfgs.items():
        if solo_reason(cfg) is None:
            by_key.setdefault(group_key(cfg), []).append(num)
        else:
            alone.append([num])
    groups: list[list[int]] = []
    for nums in by_key.values():
        inputs, classes = data.dims(cfgs[nums[0]].data)

        def weights(hidden: list[int], inputs: int = inputs, classes: int = classes) -> int:
            return sum(a * b for a, b in itertools.pairwise([inputs, *hidden, classes]))

        widths = {n: hidden_sizes(cfgs[n].hidden) for n in nums}
        group: list[int] = []
        for num in sorted(nums, key=lambda n: (weights(widths[n]), n)):
            grown = [*group, num]
            widest = [max(w) for w in zip(*(widths[n] for n in grown))]
            padded = len(grown) * weights(widest)
            if group and (
                len(grown) > max_members
                or padded > max_padding * sum(weights(widths[n]) for n in grown)
            ):
                groups.append(group)
                grown = [num]
            group = grown
        groups.append(group)
    return groups + alone


def run_log(life: job.Life, log_format: str) -> list[logging.Handler]:
    """Where a run's log lines go while it trains in the stacked launcher's process: its
    mlp_sweep.log, and, if the job shows its epochs (:func:`console.shows_epochs`), the
    console, each line labelled with the job's number (the launcher keeps the console's own
    handlers to warnings meanwhile)."""
    file = logging.FileHandler(life.out / f"{life.hydra_cfg.job.name}.log", delay=True)
    file.setFormatter(logging.Formatter(log_format))
    handlers: list[logging.Handler] = [file]
    if console.shows_epochs(life.cfg, life.hydra_cfg):
        label = f"job {life.hydra_cfg.job.num}  %(message)s"
        shown = console.ConsoleHandler(sys.stdout)
        shown.setFormatter(logging.Formatter(log_format.replace("%(message)s", label)))
        shown.addFilter(lambda record: record.levelno < logging.WARNING)  # shown already
        handlers.append(shown)
    return handlers


@contextlib.contextmanager
def logging_to(handlers: list[logging.Handler]) -> Iterator[None]:
    """Log lines written meanwhile go to ``handlers`` too."""
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)


@contextlib.contextmanager
def as_job(life: job.Life, handlers: list[logging.Handler]) -> Iterator[None]:
    """Meanwhile, the process is the run ``life``'s job: Hydra's config is its own (so that
    ``${hydra:job.num}`` and the like in its config resolve to its values, as they do when
    Hydra's launcher runs it), and log lines go to ``handlers`` too."""
    with compose.as_job(life.full_cfg), logging_to(handlers):
        yield


def _log_failure(handlers: list[logging.Handler], err: BaseException) -> None:
    """A failed run's error and traceback in its own log file, as a solo run's log has it."""
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "Job failed: %s", (one_line(err),),
        (type(err), err, err.__traceback__),
    )  # fmt: skip
    handlers[0].handle(record)


def _log_to_file(handlers: list[logging.Handler], msg: str, *args: object) -> None:
    """A line for the run's own log file only (the console has shown it already)."""
    handlers[0].handle(log.makeRecord(log.name, logging.INFO, __file__, 0, msg, args, None))


def run_solo(
    life: job.Life, log_format: str, why: str, ended: Callable[[int, Outcome], None]
) -> None:
    """Train the run ``life`` (prepared, not settled) alone, as :func:`job.run` does, and call
    ``ended(0, outcome)``: a job whose settings are not known to train stacked."""
    handlers = run_log(life, log_format)
    try:
        with as_job(life, handlers):
            _log_to_file(handlers, "trains solo: %s", why)  # the launcher said it
            life.started = time.perf_counter()  # its own time, not that of earlier groups
            try:
                # Its epochs reach the console through run_log's handlers, labelled.
                outcome: Outcome = job.train(life, progress=False)
            except Exception as err:
                _log_failure(handlers, err)
                outcome = err
    finally:
        for handler in handlers:
            handler.close()
    ended(0, outcome)


@dataclass
class Member:
    index: int  # its place in the group
    life: job.Life
    handlers: list[logging.Handler]
    model: MLP = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    generator: torch.Generator = field(init=False)
    outcome: Outcome | None = None
    done: bool = False
    reported: bool = False  # ended(index, outcome) called

    def logging(self) -> contextlib.AbstractContextManager[None]:
        """Log lines written meanwhile go to this member's mlp_sweep.log (and console) too,
        and its config resolves ``${hydra:...}`` against its own job (:func:`as_job`)."""
        return as_job(self.life, self.handlers)

    def end(self, err: BaseException) -> None:
        """Record how the member stopped (:func:`job.stopped`); keep what it returns or
        raises as its outcome. Ctrl-C meanwhile propagates: the sweep stops."""
        self.done = True
        with self.logging():
            try:
                self.outcome = job.stopped(self.life, err)
            except Exception as raised:
                self.outcome = raised


def run_group(
    lives: list[job.Life], log_format: str, ended: Callable[[int, Outcome], None]
) -> None:
    """Train the runs ``lives`` (prepared, none settled, sharing :func:`group_key`) stacked,
    calling ``ended(i, outcome)`` with ``lives[i]``'s objective or error as soon as it ends,
    while others may still train. Any other error (its data cannot be loaded, say) fails the
    members still training, with that error, and returns. Ctrl-C marks every running member
    interrupted, then propagates."""
    members = [Member(i, life, run_log(life, log_format)) for i, life in enumerate(lives)]
    for m in members:  # its own time, not that of earlier groups, even if its data fails
        m.life.started = time.perf_counter()
    try:
        _run(members, ended)
    except KeyboardInterrupt as err:
        for m in members:
            if not m.done:
                with contextlib.suppress(KeyboardInterrupt):  # recorded, then raised
                    m.end(err)
        raise
    except Exception as err:
        for m in members:
            if not m.done:
                m.end(err)
        _leave(members, ended)
    finally:
        for m in members:
            for handler in m.handlers:
                handler.close()


def _run(members: list[Member], ended: Callable[[int, Outcome], None]) -> None:
    first = members[0].life
    device = first.device
    tic = time.perf_counter()
    splits = job.load_data(first.cfg, device)
    loaded = time.perf_counter() - tic  # each member's `seconds.data`: this, then its build
    together = {"group": [str(m.life.out) for m in members], "members": len(members)}
    for m in members:
        m.life.started = time.perf_counter() - loaded
        try:
            with m.logging():
                m.model, m.optimizer, m.generator = job.build(m.life.cfg, splits, device)
                m.life.schedule = job.schedule(m.life.cfg, m.optimizer, splits)
                job.begin(
                    m.life,
                    m.model,
                    m.optimizer,
                    m.generator,
                    stacked=together,
                    preprocess=splits.preprocess,
                )
        except Exception as err:
            m.end(err)
    # Stacked once every member holds its checkpoint's weights and optimizer state.
    live = _leave(members, ended)
    with warnings.catch_warnings():
        # A member's scheduler looks for a step of the member's own optimizer; the
        # group's stepper made it (stacked.one_step).
        warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
        if live:
            optimizers = [m.optimizer for m in live]
            stack = Stack([m.model for m in live], first.cfg.model.activation, optimizers)
            _train(live, stack, splits, first.cfg.model.name, ended)


def _train(
    members: list[Member],
    stack: Stack,
    splits: Any,
    loss_name: str,
    ended: Callable[[int, Outcome], None],
) -> None:
    batch_size = members[0].life.cfg.batch_size
    _finish(stack, members, splits, loss_name)  # continued from a checkpoint of the last epoch
    active = _leave(members, ended, stack)
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
        # Each member's share of the group's epoch, by its own weights (the arithmetic it
        # asks for): the runs of a sweep add up to its time, and a wider member costs more.
        elapsed = time.perf_counter() - tic
        weights = [count_params(m.model) for m in active]
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
                        elapsed * weights[i] / sum(weights),
                    )
                    job.end_epoch(m.life, record, m.model, m.optimizer, m.generator)
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # diverged, pruned, or a write that failed
                m.end(err)
        _finish(stack, active, splits, loss_name)
        active = _leave(active, ended, stack)


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
        m.done = True  # Ctrl-C meanwhile propagates, its run marked interrupted
        with m.logging():
            try:
                m.outcome = job.complete(m.life, m.model, {k: v[i] for k, v in final.items()})
            except Exception as raised:
                m.outcome = raised


def _leave(
    active: list[Member], ended: Callable[[int, Outcome], None], stack: Stack | None = None
) -> list[Member]:
    """The members still training; the others leave ``stack``, and are reported (a failed
    one's error goes to its log file first)."""
    for m in active:
        if m.done and not m.reported:
            if isinstance(m.outcome, Exception) and hasattr(m.life, "record"):
                _log_failure(m.handlers, m.outcome)  # not into a folder it never took
            m.reported = True
            ended(m.index, m.outcome)
    staying = [i for i, m in enumerate(active) if not m.done]
    if stack is not None and len(staying) < len(active):
        stack.keep(staying)
    return [active[i] for i in staying]
