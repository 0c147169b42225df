"""One run: a composed config in, metrics and a trained model in the job folder out."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import data as data_mod
from mlp_sweep import records
from mlp_sweep.config import hidden_sizes, validate
from mlp_sweep.errors import ConfigError, one_line
from mlp_sweep.model import LOSSES, MLP
from mlp_sweep.plots import plot_curves
from mlp_sweep.train import evaluate, fit

log = logging.getLogger(__name__)

_ALIAS = re.compile(r"\$\{[\w.]+\}")  # an interpolation of another key, such as ${lr}
_VERSIONS = ("torch", "torchvision", "hydra-core", "omegaconf", "optuna", "numpy")


def pick_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other name is used as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Instantiate the optimizer config over the model's parameters."""
    try:
        return instantiate(cfg)(model.parameters())
    except (InstantiationException, TypeError, ValueError) as err:
        raise ConfigError(
            f"optimizer ({cfg.get('_target_')}) cannot be built: {one_line(err)}"
        ) from None


def params_of(cfg: DictConfig) -> dict[str, Any]:
    """The hyperparameters of a run, flat (``optimizer.momentum``), with ``hidden`` a list.

    Keys that only repeat another key (``optimizer.lr: ${lr}``) are left out.
    """
    raw = _flatten(OmegaConf.to_container(cfg, resolve=False))
    params = {
        key: value
        for key, value in _flatten(OmegaConf.to_container(cfg, resolve=True)).items()
        if not _ALIAS.fullmatch(str(raw[key]))
    }
    params["hidden"] = hidden_sizes(cfg.hidden)
    return params


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if key.startswith("_"):  # _target_, _partial_: how to build, not what
            continue
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run(cfg: DictConfig) -> float:
    """Train one configuration in the current Hydra job folder and return its objective.

    Writes metrics.json (updated after every epoch), history.csv, curves.png and model.pt.
    """
    validate(cfg)
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    started = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)

    splits = data_mod.load(
        cfg.data.name,
        device=device,
        val_size=cfg.data.val_size,
        root=cfg.data.root,
        download=cfg.data.download,
        cache_dir=cfg.data.cache_dir,
    )
    data_seconds = time.perf_counter() - started

    torch.manual_seed(cfg.seed)
    model = MLP(
        splits.num_features,
        hidden_sizes(cfg.hidden),
        splits.num_classes,
        activation=cfg.model.activation,
        init_std=cfg.init_std,
    ).to(device)
    loss_fn = LOSSES[cfg.model.name]
    optimizer = build_optimizer(cfg.optimizer, model)
    generator = torch.Generator().manual_seed(cfg.seed)

    record: dict[str, Any] = {
        "schema_version": records.SCHEMA_VERSION,
        "status": records.RUNNING,
        "error": None,
        "objective": {
            "metric": cfg.objective,
            "direction": records.direction(cfg.objective),
            "value": None,
        },
        "params": params_of(cfg),
        "overrides": list(hydra_cfg.overrides.task),
        "choices": {
            k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")
        },
        "final": {},
        "epochs_run": 0,
        "history": [],
        "seconds": {"data": data_seconds, "train": 0.0, "total": 0.0},
        "seed": cfg.seed,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "started_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "finished_at": None,
        "versions": _versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }

    def save(status: str) -> None:
        record["status"] = status
        record["seconds"]["total"] = time.perf_counter() - started
        records.write_json(out / records.METRICS_FILE, record)

    def on_epoch(epoch: dict[str, float]) -> None:
        record["history"].append(epoch)
        record["epochs_run"] = epoch["epoch"]
        record["seconds"]["train"] += epoch["seconds"]
        save(records.RUNNING)

    save(records.RUNNING)
    try:
        fit(
            model,
            loss_fn,
            optimizer,
            splits,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            generator=generator,
            on_epoch=on_epoch,
        )
        for split in ("train", "val", "test"):
            loss, acc = evaluate(model, loss_fn, getattr(splits, split))
            record["final"][f"{split}_loss"] = loss
            record["final"][f"{split}_acc"] = acc
    except KeyboardInterrupt:
        _finish(record, out, records.INTERRUPTED, save, "interrupted by the user")
        raise
    except Exception as err:
        _finish(record, out, records.FAILED, save, f"{type(err).__name__}: {err}")
        raise
    value = record["final"][cfg.objective]
    record["objective"]["value"] = value
    if cfg.save_model:
        records.atomic_write(
            out / records.MODEL_FILE, lambda tmp: torch.save(model.state_dict(), tmp)
        )
    _finish(record, out, records.COMPLETE, save)
    log.info(
        "%s  %s %.4f  test_acc %.4f  (%d epochs, %.1fs)",
        out.name,
        cfg.objective,
        value,
        record["final"]["test_acc"],
        record["epochs_run"],
        record["seconds"]["total"],
    )
    return value if math.isfinite(value) else math.nan


def _finish(
    record: dict[str, Any], out: Path, status: str, save: Any, error: str | None = None
) -> None:
    record["error"] = error
    record["finished_at"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    if record["history"]:
        history = pd.DataFrame(record["history"], columns=records.EPOCH_FIELDS)
        records.atomic_write(
            out / records.HISTORY_FILE, lambda tmp: history.to_csv(tmp, index=False)
        )
        plot_curves(history, out / records.CURVES_FILE, title=out.name)
    save(status)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("mlp-sweep", *_VERSIONS):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found
