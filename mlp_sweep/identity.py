"""What identifies a study: the settings every trial of it shares.

A study answers one question, so a search that continues it must ask the same one. The
sweeper asks :func:`check` before any trial; a new study records its identity there, and a
study that has one refuses a continuation that differs from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import checkpoint, records
from mlp_sweep.config import flatten, is_alias
from mlp_sweep.errors import ConfigError

# The study's user attribute holding the settings it was started with.
SETTINGS = "settings"


def check(study: optuna.Study, settings: dict[str, Any], sweep_dir: Path) -> None:
    """Record the settings a new study starts with; refuse to continue a study that was
    started with others, since its trials would then be ranked against different ones."""
    recorded = study.user_attrs.get(SETTINGS)
    if recorded is not None:
        differ = _differences(recorded, settings)
        if differ:
            raise ConfigError(
                f"study {study.study_name} was started with other settings ({differ}); "
                "give the same settings to continue it, or start another study with "
                "hydra.sweeper.study_name=<a new name>"
            )
        return
    if not study.trials and sweep_dir.is_dir() and any(sweep_dir.rglob(records.METRICS_FILE)):
        raise ConfigError(
            f"{sweep_dir} holds the runs of an earlier study that the storage no longer "
            "has; move them away, or choose another hydra.sweep.dir or "
            "hydra.sweeper.study_name"
        )
    study.set_user_attr(SETTINGS, settings)


def settings(config: DictConfig, space: dict[str, Any]) -> dict[str, Any]:
    """The settings every trial of a study shares: the resolved config, flat, without the
    searched parameters (and the keys of a searched config group), the config's own aliases
    of other keys (``optimizer.lr: ${lr}``), and the keys that say where, not what, a run
    trains (``device``, ``data.root``, ...)."""
    task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    raw = flatten(OmegaConf.to_container(task, resolve=False))
    resolved = flatten(OmegaConf.to_container(task, resolve=True))
    searched = tuple(space)
    kept = {
        key: value
        for key, value in resolved.items()
        if not checkpoint.is_free(key)
        and key != "trial"
        and not any(key == s or key.startswith(f"{s}.") for s in searched)
        and not is_alias(raw[key])
    }
    return json.loads(json.dumps(kept, default=str))  # as the study's storage keeps it


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    return ", ".join(
        f"{k}={before.get(k, 'searched')} then, {now.get(k, 'searched')} now" for k in keys[:3]
    )
