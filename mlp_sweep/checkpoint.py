"""What a run folder already holds, and so what a run in it does: keep it, continue it, or
start afresh. Decided by reading the folder only, before anything in it is written.

A run writes ``checkpoint.pt`` after every epoch whose loss is finite: the model and
optimizer state, the learning-rate scheduler's if it has one, the state of the generator that
shuffles the batches, and the run's metrics so far. Continuing from it gives the same numbers
as a run that was never stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import records
from mlp_sweep.config import flatten, is_alias
from mlp_sweep.errors import ConfigError, one_line

log = logging.getLogger(__name__)

# Keys that may differ between a run and its continuation: where and how it runs, and what it
# reports where, not what it trains. A data file may move: its content hash (data.sha256) is
# what identifies it.
FREE_KEYS = frozenset(
    {"resume", "retry_failed", "device", "threads", "save_model", "tags", "data.root"}
    | {"data.cache_dir", "console", "data.path", "data.test_path"}
)
FREE_GROUPS = frozenset({"logger"})  # every key under these


def is_free(key: str) -> bool:
    """Whether a flat config key may differ between a run and its continuation.

    >>> is_free("device"), is_free("logger.mlflow.tracking_uri"), is_free("lr")
    (True, True, False)
    """
    return key in FREE_KEYS or key.split(".", 1)[0] in FREE_GROUPS


# What a run does with its folder.
FRESH = "fresh"  # start from epoch 1 (an empty folder, or resume=false)
CONTINUE = "continue"  # go on from the checkpoint
KEEP = "keep"  # the folder holds this run finished: return its objective, change nothing
KEEP_FAILED = "keep_failed"  # the folder holds this run failed: report that, change nothing


@dataclass(frozen=True)
class Plan:
    action: str
    state: dict[str, Any] | None = None  # the checkpoint, for CONTINUE
    value: float | list[float] | None = None  # the objective(s) of the run kept, for KEEP
    error: str | None = None  # why the run kept failed, for KEEP_FAILED


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


def plan(out: Path, cfg: DictConfig, device: torch.device | str = "cpu") -> Plan:
    """Decide what a run of ``cfg`` does in ``out``; raise ConfigError if it may not run there.

    - a complete (or pruned) run of the same settings is kept; with ``resume=false`` it is
      trained again from scratch; a complete run with a smaller ``epochs`` is continued;
    - a failed run of the same settings stays failed, unless ``retry_failed=true`` (continue
      from its last checkpoint, whose epochs all had a finite loss) or ``resume=false``;
    - an interrupted or killed run continues from its checkpoint (``resume=true``);
    - a complete run of other settings is never overwritten; any other run of other settings
      only with ``resume=false``.

    Nothing is written: a refused run leaves the folder exactly as it was.
    """
    try:
        done: dict[str, Any] | None = records.read_metrics(out)
    except ValueError:
        done = None  # no record, or a damaged one: the checkpoint (if any) tells
    state = _load(out / records.CHECKPOINT_FILE, device)
    status = done["status"] if done else None

    if done is not None and status in (records.COMPLETE, records.PRUNED):
        differ = _differences(done["config"], cfg)
        if not differ:
            return Plan(KEEP, value=done["objective"]["value"]) if cfg.resume else Plan(FRESH)
        if _longer(done, state, cfg):
            return Plan(CONTINUE, state=state)
        raise ConfigError(
            f"{out} holds a {status} run with other settings ({differ}); it is never "
            "overwritten: choose another hydra.run.dir or hydra.sweep.dir"
        )
    if not cfg.resume:
        return Plan(FRESH)  # the user chose to start afresh over an unfinished run
    if done is not None and status == records.FAILED:
        differ = _differences(done["config"], cfg, also_free=("epochs",))
        if differ:
            raise ConfigError(
                f"{out} holds a failed run with other settings ({differ}); set resume=false "
                "to start afresh there, or choose another folder"
            )
        if not cfg.get("retry_failed", False):
            return Plan(KEEP_FAILED, error=done["error"] or "failed")
    if state is not None:
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
        return Plan(CONTINUE, state=state)
    if done is not None and done["epochs_run"] > 0:
        differ = _differences(done["config"], cfg, also_free=("epochs",))
        if differ:
            raise ConfigError(
                f"{out} holds {done['epochs_run']} epochs of a run with other settings "
                f"({differ}) and no checkpoint; set resume=false to start afresh there, or "
                "choose another folder"
            )
    return Plan(FRESH)


def _longer(done: dict[str, Any], state: dict[str, Any] | None, cfg: DictConfig) -> bool:
    """Whether ``cfg`` asks to train the complete run ``done`` for more epochs, from its
    checkpoint."""
    return (
        cfg.resume
        and done["status"] == records.COMPLETE
        and cfg.epochs > done["epochs_run"]
        and not _differences(done["config"], cfg, also_free=("epochs",))
        and state is not None
        and state["record"]["epochs_run"] == done["epochs_run"]
    )


def _load(path: Path, device: torch.device | str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        record = state["record"]
        if not isinstance(record["config"], dict) or not isinstance(record["epochs_run"], int):
            raise ValueError("it holds no run record")
    except Exception as err:
        log.warning("%s is unreadable (%s); not continuing from it", path, one_line(err))
        return None
    return state


def _differences(before: dict[str, Any], cfg: DictConfig, also_free: tuple[str, ...] = ()) -> str:
    """The settings in which ``cfg`` differs from the resolved config ``before``, as text
    ("" for none). Aliases (``optimizer.lr: ${lr}``) count, but are named only where nothing
    else differs: the key they repeat is named already."""
    old = flatten(before)
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    keys = sorted(
        k
        for k in old.keys() | new.keys()
        if not is_free(k) and k not in also_free and old.get(k) != new.get(k)
    )
    keys = [k for k in keys if not is_alias(raw.get(k))] or keys
    return ", ".join(f"{k}={old.get(k)} there, {new.get(k)} now" for k in keys[:3])
