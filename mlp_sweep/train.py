"""The training loop: shuffled index slices of tensors already on the device.

Nothing here waits for the device inside an epoch: losses and hits are summed on the device
and read once per epoch, so the same loop keeps a GPU busy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from mlp_sweep.data import Split, Splits
from mlp_sweep.errors import RunFailed
from mlp_sweep.model import LossFn

if TYPE_CHECKING:
    from mlp_sweep.schedule import Schedule

log = logging.getLogger(__name__)

EVAL_BATCH = 10_000  # evaluation needs no gradients, so large slices are cheapest
EpochHook = Callable[[dict[str, float]], None]


class Diverged(RunFailed):
    """The training loss stopped being a finite number; ``epoch`` is that epoch's record."""

    def __init__(self, message: str, epoch: dict[str, float]) -> None:
        super().__init__(message)
        self.epoch = epoch


def train_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    data: Split,
    batch_size: int,
    generator: torch.Generator,
    schedule: Schedule | None = None,
) -> tuple[float, float]:
    """One pass over ``data`` in a random order; return the mean batch loss and accuracy."""
    model.train()
    n = len(data)
    order = torch.randperm(n, generator=generator).to(data.x.device, non_blocking=True)
    loss_sum = torch.zeros((), device=data.x.device)
    hits = torch.zeros((), dtype=torch.int64, device=data.x.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x, y = data.x[idx], data.y[idx]
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.after_batch()
        loss_sum += loss.detach() * len(idx)
        hits += (logits.detach().argmax(1) == y).sum()
    return loss_sum.item() / n, hits.item() / n


@torch.inference_mode()
def evaluate(model: nn.Module, loss_fn: LossFn, data: Split) -> tuple[float, float]:
    """Mean loss and accuracy over ``data`` (NaN for an empty split)."""
    n = len(data)
    if n == 0:
        return math.nan, math.nan
    model.eval()
    loss_sum = torch.zeros((), device=data.x.device)
    hits = torch.zeros((), dtype=torch.int64, device=data.x.device)
    for start in range(0, n, EVAL_BATCH):
        x, y = data.x[start : start + EVAL_BATCH], data.y[start : start + EVAL_BATCH]
        logits = model(x)
        loss_sum += loss_fn(logits, y) * len(y)
        hits += (logits.argmax(1) == y).sum()
    return loss_sum.item() / n, hits.item() / n


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    data: Splits,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    first_epoch: int = 1,
    on_epoch: EpochHook | None = None,
    progress: bool = True,
    schedule: Schedule | None = None,
) -> None:
    """Train from ``first_epoch`` to ``epochs``, calling ``on_epoch`` with each epoch's record.

    ``schedule`` steps after each batch or each epoch, before ``on_epoch`` sees (and
    checkpoints) the epoch. ``on_epoch`` may raise to stop early (pruning). Raises
    :class:`Diverged` once the training loss is NaN or infinite; ``on_epoch`` never sees that
    epoch, so nothing checkpoints a diverged model. ``progress=False`` shows no bar, and leaves
    the console's log handlers as they are (a sweep's jobs log their epochs to their log files
    only).
    """
    bar = tqdm(
        range(first_epoch, epochs + 1),
        initial=first_epoch - 1,
        total=epochs,
        desc="epochs",
        unit="ep",
        disable=None if progress else True,  # a bar on a terminal only
        leave=False,
    )
    # Each epoch is logged: to the run's log file, and to the console above the bar.
    with logging_redirect_tqdm() if progress else contextlib.nullcontext():
        for epoch in bar:
            tic = time.perf_counter()
            train_loss, train_acc = train_epoch(
                model, loss_fn, optimizer, data.train, batch_size, generator, schedule
            )
            val_loss, val_acc = evaluate(model, loss_fn, data.val)
            if schedule is not None:
                schedule.after_epoch()
            record = epoch_record(
                epoch, epochs, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - tic
            )
            if on_epoch is not None:
                on_epoch(record)


def epoch_record(
    epoch: int,
    epochs: int,
    train_loss: float,
    train_acc: float,
    val_loss: float,
    val_acc: float,
    seconds: float,
    logger: logging.Logger = log,
) -> dict[str, float]:
    """An epoch's record, logged; raises :class:`Diverged` if its training loss is NaN or
    infinite. Solo and stacked runs both close their epochs here."""
    record = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "seconds": seconds,
    }
    logger.info(
        f"epoch {epoch}/{epochs}  train_loss {train_loss:.4f}  train_acc {train_acc:.4f}"
        f"  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  {seconds:.2f}s"
    )
    if not math.isfinite(train_loss):
        message = f"training diverged: the loss became {train_loss} in epoch {epoch}"
        raise Diverged(message, record)
    return record
