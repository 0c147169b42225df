"""Define-by-run search spaces: a Python function draws each trial's settings.

A space is a function ``space(cfg, trial)``, named by ``hydra.sweeper.space``. It draws values
with Optuna's ``trial.suggest_*`` and may branch on them, so that the learning-rate range
depends on the optimizer and the number of layer widths on the depth. It returns the trial's
config overrides as a dict, such as ``{"hidden": [256, 128], "optimizer": "adam",
"lr": 0.001}``; or None, and then every value it suggested is an override under the name it
was suggested with (hydra-optuna-sweeper's ``custom_search_space`` convention).

A function named in a config is code that runs, so a space must be trusted: this package's
spaces (``mlp_sweep.*``) are; any other must be named in ``hydra.sweeper.trusted_spaces``,
exactly or by its module (``myspaces.*``). Hydra's execution whitelist enforces it, and stays
as strict as before for every other ``_target_``.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution

from mlp_sweep.errors import ConfigError, one_line
from mlp_sweep.study import throwaway

TRUSTED = ("mlp_sweep.*",)  # spaces that need no hydra.sweeper.trusted_spaces entry
CHECK_DRAWS = 8  # trials drawn through a space, before the first real one, to check it
_ABSENT = object()
_PLAIN = re.compile(r"[A-Za-z_][\w.\-/]*")  # a string Hydra reads back as itself unquoted


class Space:
    """A trusted define-by-run space, called as ``space(cfg, trial)`` for each new trial."""

    def __init__(self, path: str, trusted: Sequence[str] = ()) -> None:
        self.path = path
        allowed = (*TRUSTED, *trusted)
        if not any(_matches(path, pattern) for pattern in allowed):
            raise ConfigError(
                f"hydra.sweeper.space={path!r} is not trusted: only spaces under "
                f"{', '.join(allowed)} run; to run yours, trust its module, e.g. "
                f"hydra.sweeper.trusted_spaces=[{path.rpartition('.')[0] or path}.*]"
            )
        try:
            self._function: Callable[..., Any] = instantiate(
                {"_target_": path, "_partial_": True}, _execution_whitelist_=allowed
            )
        except InstantiationException as err:
            first = str(err).strip().splitlines()[0]  # Hydra's next lines repeat the key
            if err.__cause__ is not None:  # why the import failed, e.g. inside the module
                first += f" ({one_line(err.__cause__)})"
            raise ConfigError(f"hydra.sweeper.space={path!r} cannot be loaded: {first}") from None

    def __call__(self, cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
        """The overrides of ``trial``, drawn by the space function."""
        drawn_before = set(trial.params)
        try:
            result = self._function(cfg, trial)
        except Exception as err:
            raise ConfigError(
                f"hydra.sweeper.space={self.path!r} raised {type(err).__name__}: {one_line(err)}"
            ) from err
        if result is None:
            return {k: v for k, v in trial.params.items() if k not in drawn_before}
        if not isinstance(result, Mapping):
            raise ConfigError(
                f"hydra.sweeper.space={self.path!r} returned a {type(result).__name__}: it "
                "must return a dict of config overrides, or None"
            )
        return dict(result)

    def check(
        self,
        cfg: DictConfig,
        fixed: Mapping[str, Any],
        searched: Mapping[str, BaseDistribution],
        compose: Callable[[list[str]], None],
    ) -> dict[str, BaseDistribution]:
        """Draw :data:`CHECK_DRAWS` trials through the space in a throw-away study and raise
        ConfigError at the first that cannot run: the function raises, sets a key that is not
        in the config, sets one that the command line fixes or ``hydra.sweeper.params``
        searches, or gives overrides that ``compose`` (which composes and validates a job's
        config) refuses. Random draws reach every branch of a small space; the real study's
        sampler is left untouched. Returns the Optuna parameters the draws suggested, each
        with its distribution."""
        study = throwaway(sampler=optuna.samplers.RandomSampler(seed=0))
        drawn: dict[str, BaseDistribution] = {}
        for _ in range(CHECK_DRAWS):
            trial = study.ask()
            overrides = self(cfg, trial)
            drawn.update(trial.distributions)
            for key in overrides:
                self._check_key(key, fixed, searched)
            try:
                compose(to_overrides(overrides))
            except ConfigError as err:
                raise ConfigError(f"hydra.sweeper.space={self.path!r} drew {err}") from None
            except Exception as err:
                self._check_keys_exist(cfg, overrides)
                first = str(err).strip().splitlines()[0] if str(err).strip() else one_line(err)
                raise ConfigError(
                    f"hydra.sweeper.space={self.path!r} drew {' '.join(to_overrides(overrides))}"
                    f", which cannot be composed: {first}"
                ) from None
        return drawn

    def _check_key(
        self, key: str, fixed: Mapping[str, Any], searched: Mapping[str, BaseDistribution]
    ) -> None:
        if key in fixed:
            raise ConfigError(
                f"hydra.sweeper.space={self.path!r} sets {key}, which is fixed to {key}="
                f"{fixed[key]} on the command line or in hydra.sweeper.params; drop one of them"
            )
        if key in searched:
            raise ConfigError(
                f"hydra.sweeper.space={self.path!r} sets {key}, which hydra.sweeper.params "
                "searches too; drop one of them (hparams_search=wide has no params)"
            )

    def _check_keys_exist(self, cfg: DictConfig, overrides: Mapping[str, Any]) -> None:
        """Name a key of a draw that could not be composed which ``cfg`` lacks, such as a
        helper value (``depth``) the space returned as an override. A key below one the draw
        sets too (``optimizer.betas`` beside ``optimizer``, a config group choice) is left to
        the composition's own error: it may be a key of that choice only."""
        for key in overrides:
            parents = {key.rsplit(".", n)[0] for n in range(1, key.count(".") + 1)}
            if (
                parents.isdisjoint(overrides)
                and OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT
            ):
                allowed = ", ".join(sorted(k for k in cfg if k != "hydra"))
                raise ConfigError(
                    f"hydra.sweeper.space={self.path!r} sets {key!r}, which is not a config "
                    f"key (a space that draws helper values, such as a depth, returns its "
                    f"overrides as a dict); allowed: {allowed}"
                )


def load(path: str | None, alias: str | None, trusted: Sequence[str]) -> Space | None:
    """The space named by ``hydra.sweeper.space``, or by hydra-optuna-sweeper's name for it,
    ``custom_search_space``; None if neither is set."""
    if path and alias and path != alias:
        raise ConfigError(
            f"hydra.sweeper.space={path!r} and hydra.sweeper.custom_search_space={alias!r} "
            "name two spaces; set only hydra.sweeper.space"
        )
    chosen = path or alias
    return Space(chosen, trusted) if chosen else None


def to_overrides(values: Mapping[str, Any]) -> list[str]:
    """Hydra command-line overrides for config values.

    >>> to_overrides({"hidden": [256, 128], "init_std": None, "optimizer": "adam", "x": True})
    ['hidden=[256,128]', 'init_std=null', 'optimizer=adam', 'x=true']
    """
    return [f"{key}={_override_value(value)}" for key, value in values.items()]


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):  # numpy's integers too
        return repr(int(value))
    if isinstance(value, numbers.Real):  # numpy's floats too, whose repr names numpy
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    return json.dumps(text)


def _matches(path: str, pattern: str) -> bool:
    """Hydra's whitelist rule: an exact name, or ``package.*`` for anything under it."""
    if pattern.endswith(".*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def wide(cfg: DictConfig, trial: optuna.Trial) -> dict[str, Any]:
    """The space of ``hparams_search=wide``: architecture, optimizer, init, schedule, batch.

    - 1 to 3 hidden layers, each 32 to 512 units wide, drawn on a log scale;
    - the activation: relu, tanh or sigmoid;
    - the optimizer, each with its own ranges: sgd (lr 0.005 to 0.5, momentum 0 to 0.95,
      Nesterov or not), adam (lr 1e-4 to 1e-2, weight decay 1e-6 to 1e-3) or adamw (lr 1e-4
      to 1e-2, decoupled weight decay 1e-4 to 0.1), rates and decays on a log scale;
    - the init: PyTorch's default, or N(0, init_std) with init_std 0.005 to 0.1;
    - the scheduler: none, cosine or onecycle; the batch size: 64, 128 or 256 (smaller
      batches cost more per epoch than they gain on a CPU).

    Optuna parameters whose range depends on the optimizer carry its name (``adam_lr``), so
    the sampler models each range on its own; the returned overrides use the config keys.
    """
    depth = trial.suggest_int("depth", 1, 3)
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw"])
    overrides: dict[str, Any] = {
        "hidden": [trial.suggest_int(f"width_{i}", 32, 512, log=True) for i in range(depth)],
        "model.activation": trial.suggest_categorical("activation", ["relu", "tanh", "sigmoid"]),
        "optimizer": optimizer,
    }
    if optimizer == "sgd":
        overrides["lr"] = trial.suggest_float("sgd_lr", 0.005, 0.5, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.95)
        overrides["optimizer.momentum"] = momentum
        # Nesterov momentum needs some momentum to look ahead with.
        overrides["optimizer.nesterov"] = momentum > 0 and trial.suggest_categorical(
            "nesterov", [False, True]
        )
    else:
        decay = (1e-6, 1e-3) if optimizer == "adam" else (1e-4, 0.1)
        overrides["lr"] = trial.suggest_float(f"{optimizer}_lr", 1e-4, 1e-2, log=True)
        overrides["optimizer.weight_decay"] = trial.suggest_float(
            f"{optimizer}_weight_decay", *decay, log=True
        )
    overrides["init_std"] = None  # PyTorch's default init
    if trial.suggest_categorical("init", ["default", "normal"]) == "normal":
        overrides["init_std"] = trial.suggest_float("init_std", 0.005, 0.1, log=True)
    overrides["scheduler"] = trial.suggest_categorical("scheduler", ["none", "cosine", "onecycle"])
    overrides["batch_size"] = trial.suggest_categorical("batch_size", [64, 128, 256])
    return overrides
