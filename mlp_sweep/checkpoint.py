"""What a run folder already holds: a finished run to keep, or a checkpoint to continue from.

A run writes ``checkpoint.pt`` after every epoch: the model and optimizer state, the
learning-rate scheduler's if it has one, the state of the generator that shuffles the
batches, and the run's metrics so far. Continuing from it gives
the same numbers as a run that was never stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import records
from mlp_sweep.config import flatten
from mlp_sweep.errors import ConfigError

log = logging.getLogger(__name__)

# Keys that may differ between a run and its continuation: where and how it runs, not what.
_FREE = {"resume", "device", "threads", "save_model", "tags", "data.root", "data.cache_dir"}


def save(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    record: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Write the state after an epoch, atomically."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "record": record,
    }
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    records.write_torch(path, state)


def finished_value(out: Path, cfg: DictConfig) -> float | list[float] | None:
    """The objective of a complete run of this config in ``out``, so it need not run again.

    None if there is none, or if the same run is to continue to more ``epochs``. Raises
    ConfigError if ``out`` holds a complete run of another config: it is never overwritten.
    """
    try:
        done = records.read_metrics(out)
    except ValueError:
        return None
    if done["status"] != records.COMPLETE:
        return None
    differ = _differences(done["config"], cfg, also_free=())
    if not differ:
        return done["objective"]["value"]
    longer = cfg.epochs > done["epochs_run"] and not _differences(done["config"], cfg, ("epochs",))
    if longer and cfg.resume and (out / records.CHECKPOINT_FILE).is_file():
        return None  # the same run, to be trained for more epochs
    raise ConfigError(
        f"{out} holds a complete run with other settings ({differ}); keep it and choose "
        "another hydra.run.dir or hydra.sweep.dir"
    )


def resumable(out: Path, cfg: DictConfig, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint in ``out`` to continue from, if ``cfg.resume`` and it fits ``cfg``.

    ``epochs`` may grow: a finished run continues to the new total.
    """
    path = out / records.CHECKPOINT_FILE
    if not cfg.resume or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        log.warning("%s is unreadable (%s); starting afresh", path, err)
        return None
    differ = _differences(state["record"]["config"], cfg, also_free=("epochs",))
    if differ:
        raise ConfigError(
            f"resume=true: the checkpoint in {out} has other settings ({differ}); set "
            "resume=false to start afresh there, or choose another folder"
        )
    if state["record"]["epochs_run"] > cfg.epochs:
        raise ConfigError(
            f"resume=true: the checkpoint in {out} is at epoch "
            f"{state['record']['epochs_run']}, beyond epochs={cfg.epochs}"
        )
    return state


def _differences(before: dict[str, Any], cfg: DictConfig, also_free: tuple[str, ...]) -> str:
    old = flatten(before)
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    free = _FREE.union(also_free)
    keys = sorted(k for k in old.keys() | new.keys() if k not in free and old.get(k) != new.get(k))
    return ", ".join(f"{k}={old.get(k)} there, {new.get(k)} now" for k in keys[:3])
