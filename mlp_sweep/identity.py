"""What identifies a study: the settings every trial shares, its search space, its folder.

A study answers one question, so a search that continues it must ask the same one. The
sweeper asks :func:`check` before any trial: a new study records its :class:`Identity` in
its user attributes, and a study that has one refuses a continuation that differs from it,
naming the differences. What a continuation may change: ``n_trials``, the sampler and its
seed, the pruner, the launcher, ``timeout``, ``enqueue``, and the keys that say where a run
trains rather than what (``device``, ``threads``, the loggers, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from mlp_sweep import checkpoint, records
from mlp_sweep.config import flatten, is_alias
from mlp_sweep.errors import ConfigError

# The study's user attributes holding its identity.
SETTINGS = "settings"  # the settings every trial shares, flat
SPACE = "space"  # the searched parameters' distributions, and the define-by-run function
SWEEP_DIR = "sweep_dir"  # the folder of its trials, which its summary covers
CHOICES = "choices"  # the option of each config group its settings come from (optimizer=sgd)


@dataclass(frozen=True)
class Identity:
    """What a study's trials share, as its user attributes keep it (JSON values)."""

    settings: dict[str, Any]
    space: dict[str, Any]
    sweep_dir: str
    choices: dict[str, str]


def of(
    shared: DictConfig,
    searched: Mapping[str, BaseDistribution],
    function: str | None,
    sweep_dir: Path,
    variants: Mapping[str, DictConfig] | None = None,
) -> Identity:
    """The identity of a search: ``shared`` is a trial's config with every fixed value
    applied; ``variants`` the same for each choice of a searched config group, keyed by
    ``group=choice`` (``model=softmax_ce``), since a setting under a searched group
    (``model.activation=relu``) applies to every trial too; it is recorded for each choice
    (``model[softmax_ce].activation``)."""
    settings = _settings(shared, searched)
    for variant, cfg in (variants or {}).items():
        group, choice = variant.split("=", 1)
        for key, value in _settings(cfg, {}).items():
            if key.startswith(f"{group}."):
                settings[f"{group}[{choice}]{key.removeprefix(group)}"] = value
    space = {
        "params": {k: show(d) for k, d in sorted(searched.items())},
        "function": function,
    }
    choices = {
        group: str(choice)
        for group, choice in shared.hydra.runtime.choices.items()
        if any(_under(key, group) for key in settings)
    }
    return Identity(settings, space, str(sweep_dir.resolve()), choices)


def check(study: optuna.Study, identity: Identity) -> None:
    """Record the identity of a new study; refuse to continue a study with another one, since
    its trials would then be ranked against trials that asked another question."""
    attrs = study.user_attrs
    if SETTINGS not in attrs:
        if not study.trials:
            check_unclaimed(Path(identity.sweep_dir))
    else:
        _refuse(study, "other settings", _settings_differences(attrs, identity))
        if SPACE in attrs:
            differ = _space_differences(attrs[SPACE], identity.space)
            _refuse(study, "another search space", differ)
        if attrs.get(SWEEP_DIR, identity.sweep_dir) != identity.sweep_dir:
            raise ConfigError(
                f"study {study.study_name} keeps its trials in {attrs[SWEEP_DIR]}, not in "
                f"{identity.sweep_dir}; continue it there (hydra.sweep.dir="
                f"{attrs[SWEEP_DIR]}), or start another study with "
                "hydra.sweeper.study_name=<a new name>"
            )
    for name, value in (
        (SETTINGS, identity.settings),
        (SPACE, identity.space),
        (SWEEP_DIR, identity.sweep_dir),
        (CHOICES, identity.choices),
    ):
        if name not in attrs:  # a study from before a part of its identity was recorded
            study.set_user_attr(name, value)


def check_unclaimed(folder: Path) -> None:
    """Refuse to start a new study in a folder that holds the runs of another one."""
    if folder.is_dir() and any(folder.rglob(records.METRICS_FILE)):
        raise ConfigError(
            f"{folder.resolve()} holds the runs of an earlier study that the storage no "
            "longer has; move them away, or choose another hydra.sweep.dir or "
            "hydra.sweeper.study_name"
        )


def _refuse(study: optuna.Study, what: str, differ: str) -> None:
    if differ:
        raise ConfigError(
            f"study {study.study_name} was started with {what} ({differ}); give the same "
            f"{what.split(' ', 1)[1]} to continue it, or start another study with "
            "hydra.sweeper.study_name=<a new name>"
        )


def _settings(config: DictConfig, searched: Mapping[str, Any]) -> dict[str, Any]:
    """The settings every trial of a study shares: the resolved config, flat, without the
    searched parameters (and the keys of a searched config group), the config's own aliases
    of other keys (``optimizer.lr: ${lr}``), and the keys that say where, not what, a run
    trains (``device``, ``data.root``, ...). A value that differs from job to job
    (``seed=${hydra:job.num}``) is kept as it is written."""
    task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    raw = flatten(OmegaConf.to_container(task, resolve=False))
    resolved = flatten(OmegaConf.to_container(task, resolve=True))
    kept = {
        key: raw[key] if "${hydra:" in str(raw[key]) else value
        for key, value in resolved.items()
        if not checkpoint.is_free(key)
        and key != "trial"
        and not any(_under(key, s) for s in searched)
        and not is_alias(raw[key])
    }
    return json.loads(json.dumps(kept, default=str))  # as the study's storage keeps it


def show(distribution: BaseDistribution) -> str:
    """A distribution as ``hydra.sweeper.params`` writes it.

    >>> show(FloatDistribution(0.01, 5.0, log=True)), show(IntDistribution(1, 9, step=2))
    ('tag(log, interval(0.01, 5.0))', 'range(1, 9, step=2)')
    >>> show(CategoricalDistribution([25, 50]))
    'choice(25, 50)'
    """
    if isinstance(distribution, CategoricalDistribution):
        return f"choice({', '.join(map(str, distribution.choices))})"
    assert isinstance(distribution, (FloatDistribution, IntDistribution))
    low, high, step = distribution.low, distribution.high, distribution.step
    if step is None:
        shown = f"interval({low}, {high})"
    elif isinstance(distribution, IntDistribution) and step == 1:
        shown = f"int(interval({low}, {high}))"
    else:
        shown = f"range({low}, {high}, step={step})"
    return f"tag(log, {shown})" if distribution.log else shown


def _settings_differences(attrs: Mapping[str, Any], identity: Identity) -> str:
    """The first three settings that differ, in the terms of the command line: a config
    group whose option changed as ``scheduler=none then, cosine now`` rather than its keys;
    a key that one side lacks as searched, if that side searched it, else as absent."""
    before, now = attrs[SETTINGS], identity.settings
    keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    then_choices = attrs.get(CHOICES, {})  # none in a study from before they were recorded
    groups = sorted(
        group
        for group in then_choices.keys() & identity.choices.keys()
        if then_choices[group] != identity.choices[group] and any(_under(k, group) for k in keys)
    )
    keys = [k for k in keys if not any(_under(k, group) for group in groups)]
    searched_then = attrs.get(SPACE, {}).get("params", {})

    def shown(settings: Mapping[str, Any], searched: Mapping[str, Any], key: str) -> Any:
        if key in settings:
            return settings[key]
        return "searched" if any(_under(key, s) for s in searched) else "absent"

    differ = [f"{g}={then_choices[g]} then, {identity.choices[g]} now" for g in groups] + [
        f"{k}={shown(before, searched_then, k)} then, {shown(now, identity.space['params'], k)} now"
        for k in keys
    ]
    return ", ".join(differ[:3])


def _under(key: str, group: str) -> bool:
    """Whether a flat settings key is the group's own or one of its keys."""
    return key == group or key.startswith(f"{group}.")


def _differences(
    before: Mapping[str, Any], now: Mapping[str, Any], absent: str, prefix: str
) -> str:
    """The first three keys whose values differ, as ``key=old then, new now``; a space's
    distributions hold commas, so its keys are parted by semicolons."""
    keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    return "; ".join(
        f"{prefix}{k}={before.get(k, absent)} then, {now.get(k, absent)} now" for k in keys[:3]
    )


def _space_differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    if before.get("function") != now.get("function"):
        then, now_ = (d.get("function") or "null" for d in (before, now))
        return f"hydra.sweeper.space={then} then, {now_} now"
    return _differences(
        before.get("params", {}), now.get("params", {}), "not searched", "hydra.sweeper.params."
    )
