"""One run: a composed config in, metrics and a trained model in the job folder out."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import math
import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import checkpoint, objectives, records
from mlp_sweep import data as data_mod
from mlp_sweep.config import flatten, hidden_sizes, validate
from mlp_sweep.errors import ConfigError, one_line
from mlp_sweep.launchers import job_threads
from mlp_sweep.model import LOSSES, MLP, count_params
from mlp_sweep.plots import plot_curves
from mlp_sweep.schedule import build_schedule
from mlp_sweep.search import trial_reporter
from mlp_sweep.train import evaluate, fit

log = logging.getLogger(__name__)

_ALIAS = re.compile(r"\$\{[\w.]+\}")  # an interpolation of another key, such as ${lr}
_VERSIONS = ("torch", "torchvision", "hydra-core", "omegaconf", "optuna", "numpy")
# What an optimizer config may build with `_target_` (Hydra's execution whitelist). Given at the
# call, not only by run.py, so jobs in other processes (joblib, submitit) check it too.
OPTIMIZERS = ("torch.optim.*",)


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
        return instantiate(cfg, _execution_whitelist_=OPTIMIZERS)(model.parameters())
    except (InstantiationException, TypeError, ValueError) as err:
        raise ConfigError(
            f"optimizer ({cfg.get('_target_')}) cannot be built: {one_line(err)}"
        ) from None


def params_of(cfg: DictConfig) -> dict[str, Any]:
    """The hyperparameters of a run, flat (``optimizer.momentum``), with ``hidden`` a list.

    Keys that say how to build rather than what (``_target_``) and keys that only repeat
    another key (``optimizer.lr: ${lr}``) are left out.
    """
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    params = {
        key: value
        for key, value in flatten(OmegaConf.to_container(cfg, resolve=True)).items()
        if not key.rsplit(".", 1)[-1].startswith("_") and not _ALIAS.fullmatch(str(raw[key]))
    }
    params["hidden"] = hidden_sizes(cfg.hidden)
    return params


def run(cfg: DictConfig) -> float | list[float]:
    """Train one configuration in the current Hydra job folder and return its objective.

    Writes metrics.json and checkpoint.pt after every epoch, then history.csv, curves.png and
    model.pt. A folder that already holds this run complete is left as it is; one holding its
    checkpoint continues from there (``resume=true``). In an Optuna search (``cfg.trial`` set)
    each epoch's objective goes to the study, and a pruned run returns its last one. With
    several objectives (``objective=[val_acc,n_params]``) it returns a list, one value each.
    """
    validate(cfg)
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    done = checkpoint.finished_value(out, cfg)
    if done is not None:
        log.info(
            "%s is complete already: %s; kept as it is", out, objectives.show(cfg.objective, done)
        )
        return done
    started = time.perf_counter()
    threads = job_threads(cfg.threads, hydra_cfg.launcher)
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(cfg.device)
    splits = data_mod.load(
        cfg.data.name,
        device=device,
        val_size=cfg.data.val_size,
        root=cfg.data.root,
        download=cfg.data.download,
        cache_dir=cfg.data.cache_dir,
    )
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
    schedule = build_schedule(
        cfg.scheduler,
        optimizer,
        steps_per_epoch=math.ceil(len(splits.train) / cfg.batch_size),
        epochs=cfg.epochs,
    )
    generator = torch.Generator().manual_seed(cfg.seed)

    record = RunRecord(out, cfg, hydra_cfg, device, started)
    state = checkpoint.resumable(out, cfg, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if schedule is not None:
            schedule.scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        record.resume(state["record"])
        log.info("continuing %s after epoch %d", out, record.data["epochs_run"])
    report = None
    if cfg.trial is not None:
        report = trial_reporter(cfg.trial, hydra_cfg.sweeper, cfg.objective, out)
        record.data["trial"] = {"number": cfg.trial, "study": hydra_cfg.sweeper.study_name}

    def on_epoch(epoch: dict[str, float]) -> None:
        record.add_epoch(epoch)
        # The checkpoint first: a run stopped between the two writes resumes from this epoch.
        checkpoint.save(
            out / records.CHECKPOINT_FILE,
            model=model,
            optimizer=optimizer,
            generator=generator,
            record=record.data,
            scheduler=schedule.scheduler if schedule is not None else None,
        )
        record.save()
        if report is not None:
            report(epoch)

    try:
        fit(
            model,
            loss_fn,
            optimizer,
            splits,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            generator=generator,
            first_epoch=record.data["epochs_run"] + 1,
            on_epoch=on_epoch,
            schedule=schedule,
        )
        final = {}
        for split in ("train", "val", "test"):
            final[f"{split}_loss"], final[f"{split}_acc"] = evaluate(
                model, loss_fn, getattr(splits, split)
            )
        final["n_params"] = count_params(model)
        if cfg.save_model:
            records.write_torch(out / records.MODEL_FILE, model.state_dict())
    except optuna.TrialPruned as pruned:
        value = record.data["history"][-1][cfg.objective]
        record.finish(records.PRUNED, objective=value, error=str(pruned))
        return value
    except KeyboardInterrupt:
        record.finish(records.INTERRUPTED, error="interrupted by the user")
        raise
    except Exception as err:
        record.finish(records.FAILED, error=f"{type(err).__name__}: {one_line(err)}")
        raise
    # The training time is the `seconds` metric: a cost some searches minimise.
    value = objectives.value({**final, "seconds": record.data["seconds"]["train"]}, cfg.objective)
    record.finish(records.COMPLETE, objective=value, final=final)
    log.info(
        "%s  %s  test_acc %.4f  (%d epochs, %.1fs)",
        out.name,
        objectives.show(cfg.objective, value),
        final["test_acc"],
        record.data["epochs_run"],
        record.data["seconds"]["total"],
    )
    return value


class RunRecord:
    """metrics.json of one run, kept in memory and rewritten atomically as the run goes."""

    def __init__(
        self,
        out: Path,
        cfg: DictConfig,
        hydra_cfg: DictConfig,
        device: torch.device,
        started: float,
    ) -> None:
        self.out = out
        self.started = started
        self.data: dict[str, Any] = {
            "schema_version": records.SCHEMA_VERSION,
            "status": records.RUNNING,
            "error": None,
            "objective": objectives.entry(cfg.objective),
            "params": params_of(cfg),
            "overrides": list(hydra_cfg.overrides.task),
            "choices": {
                k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")
            },
            "trial": None,
            "final": {},
            "epochs_run": 0,
            "history": [],
            "seconds": {"data": time.perf_counter() - started, "train": 0.0, "total": 0.0},
            "seed": cfg.seed,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "started_at": _now(),
            "finished_at": None,
            "versions": dict(_versions()),
            "config": OmegaConf.to_container(cfg, resolve=True),
        }
        self.save()

    def save(self) -> None:
        self.data["seconds"]["total"] = time.perf_counter() - self.started
        records.write_json(self.out / records.METRICS_FILE, self.data)

    def resume(self, earlier: dict[str, Any]) -> None:
        """Carry over the epochs and training time of the run this one continues."""
        self.data["history"] = earlier["history"]
        self.data["epochs_run"] = earlier["epochs_run"]
        self.data["seconds"]["train"] = earlier["seconds"]["train"]
        self.data["started_at"] = earlier["started_at"]
        self.save()

    def add_epoch(self, epoch: dict[str, float]) -> None:
        """Record an epoch in memory; :meth:`save` writes it."""
        self.data["history"].append(epoch)
        self.data["epochs_run"] = epoch["epoch"]
        self.data["seconds"]["train"] += epoch["seconds"]

    def finish(
        self,
        status: str,
        objective: float | None = None,
        final: dict[str, float] | None = None,
        error: str | None = None,
    ) -> None:
        """Write history.csv and curves.png, then the final metrics.json."""
        self.data.update(status=status, error=error, finished_at=_now(), final=final or {})
        self.data["objective"]["value"] = objective
        if self.data["history"]:
            history = pd.DataFrame(self.data["history"], columns=records.EPOCH_FIELDS)
            records.atomic_write(
                self.out / records.HISTORY_FILE, lambda tmp: history.to_csv(tmp, index=False)
            )
            title = f"{self.out.name}: {' '.join(self.data['overrides'])}"[:120]
            plot_curves(history, self.out / records.CURVES_FILE, title=title)
        self.save()


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


@functools.cache
def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("mlp-sweep", *_VERSIONS):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found
