"""Composing the jobs of a sweep, each exactly as Hydra's ``load_sweep_config`` composes it.

Hydra composes every job from scratch: it builds the defaults list, reads every config file and
merges them over the schema, which costs more than training a one-epoch job. Most jobs of a
sweep differ from an earlier job only in plain ``key=value`` overrides: other values
(``hidden=50`` and ``hidden=100`` in a grid), or more of them (a search's trial, after the
config of its fixed settings and its config group choice), with the same config group
choices and other overrides. Such a job starts from a copy of the earlier job's config, and
its own values are applied by Hydra's own override code, the last step of Hydra's own
composition. Everything else is composed by Hydra: the first job of each kind, a config group
choice that differs (``model=...``), ``+key``, ``++key``, ``~key``, ``key=append(...)``, a
dict value and any ``hydra.`` key. ``tests/test_compose.py`` compares the two ways across
every kind of override.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from mlp_sweep.config import hydra_keys_said
from mlp_sweep.errors import ConfigError


class JobComposer:
    """``compose(overrides)`` is ``loader.load_sweep_config(master, overrides)``, with a
    job that only changes or adds values to an earlier job's plain overrides copied from it."""

    def __init__(self, loader: Any, master: DictConfig) -> None:
        self._loader = loader
        self._master = master
        self._parser = OverridesParser.create(config_loader=loader)
        # The overrides other than plain values (config group choices sorted: Hydra applies
        # them to the defaults list, in any order; the others in order) -> the set of keys of
        # the plain values a job Hydra composed with them set -> its config and those values.
        self._composed: dict[tuple[Any, ...], dict[frozenset[str], tuple[DictConfig, dict]]] = {}
        self._repositories: dict[tuple[str, ...], Any] = {}

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self._parser.parse_overrides(list(overrides))
        repo = self._repository(parsed)
        if repo is None:
            return self._loader.load_sweep_config(self._master, list(overrides))
        plain = [o for o in parsed if _plain(o, repo)]
        choices = [o for o in parsed if _choice(o, repo)]  # never plain: they name groups
        values = {o.key_or_group: o.input_line for o in plain}
        if _touched_twice(parsed, values, choices):
            return self._loader.load_sweep_config(self._master, list(overrides))
        others = [o for o in parsed if o not in plain and o not in choices]
        composed = self._composed.setdefault(_kind(choices, others), {})
        for keys, (first, before) in composed.items():
            if keys <= values.keys():
                return self._from(first, before, parsed, plain)
        cfg = self._loader.load_sweep_config(self._master, list(overrides))
        composed[frozenset(values)] = (_copy(cfg), values)
        return cfg

    def _repository(self, overrides: list[Override]) -> Any:
        """The config groups and configs Hydra composes a job from: its loader's, with the
        ``hydra.searchpath`` the sweep or the job gives (which Hydra adds for each
        composition). None where the loader is not Hydra's own: Hydra then composes each job."""
        lines = tuple(o.input_line for o in overrides if o.key_or_group == "hydra.searchpath")
        if lines not in self._repositories:
            make = getattr(self._loader, "_parse_overrides_and_create_caching_repo", None)
            sweep = OmegaConf.to_container(self._master.hydra.overrides.hydra)  # as written
            name = self._master.hydra.job.config_name
            self._repositories[lines] = None if make is None else make(name, [*sweep, *lines])[1]
        return self._repositories[lines]

    def _from(
        self,
        first: DictConfig,
        before: dict[str, str],
        overrides: list[Override],
        plain: list[Override],
    ) -> DictConfig:
        """The config of a job whose ``plain`` overrides change or add values to those
        (``before``) that ``first`` was composed with, its other overrides being the same. A
        value Hydra refuses raises the error Hydra's composition raises, from the same code."""
        cfg = _copy(first)
        changed = [o for o in plain if before.get(o.key_or_group) != o.input_line]
        ConfigLoaderImpl._apply_overrides_to_config(changed, cfg)
        cfg.hydra.overrides.task = [o.input_line for o in overrides if not o.is_hydra_override()]
        OmegaConf.copy_cache(from_config=self._master, to_config=cfg)
        return cfg


def _kind(choices: list[Override], others: list[Override]) -> tuple[Any, ...]:
    """What a job shares with each job it can start from: its overrides that are not plain
    values, config group choices sorted (Hydra applies them to the defaults list, in any
    order) and the others in order."""
    return tuple(sorted(o.input_line for o in choices)), tuple(o.input_line for o in others)


def _touched_twice(
    overrides: list[Override], values: dict[str, str], choices: list[Override]
) -> bool:
    """Whether a plain value's key is touched by another override too: their order, which may
    differ from an earlier job's, would then matter. A config group choice is applied before
    any value, whatever its place."""
    keys = [o.key_or_group for o in overrides if o not in choices]
    return any(
        sum(k == key or k.startswith(f"{key}.") or key.startswith(f"{k}.") for k in keys) > 1
        for key in values
    )


def _plain(override: Override, repo: Any) -> bool:
    """A ``key=value`` override of a value, which Hydra applies to the composed config."""
    key = override.key_or_group
    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and not override.is_list_extend()
        and not key.startswith("hydra")
        and not isinstance(override.value(), dict)
        and not (repo.group_exists(key) or repo.config_exists(key))
    )


def _choice(override: Override, repo: Any) -> bool:
    """A ``group=option`` override, which Hydra applies to the defaults list."""
    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and isinstance(override.value(), str)
        and repo.group_exists(override.key_or_group)
    )


def _copy(cfg: DictConfig) -> DictConfig:
    """A deep copy of ``cfg``, through pickle: OmegaConf supports it (configs travel so to the
    processes of other launchers), and it copies a job's config in less than half the time
    ``copy.deepcopy`` takes, node by node in Python. A value pickle cannot take is copied by
    deepcopy."""
    try:
        return pickle.loads(pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError):
        return copy.deepcopy(cfg)


def number(cfg: DictConfig, num: int) -> Path:
    """Make the composed job ``cfg`` job number ``num`` as its launcher will: its
    ``hydra.job.num`` and ``id``, and the folder it runs in (``hydra.runtime.output_dir``),
    which it returns. Raises ConfigError for a ``hydra.sweep.subdir`` that cannot name it."""
    with read_write(cfg.hydra.job), open_dict(cfg.hydra.job):
        cfg.hydra.job.num = num
        cfg.hydra.job.id = str(num)
    with as_job(cfg):  # the subdir may read the job's values: ${hydra:job.num}, ${seed}
        subdir = cfg.hydra.sweep._get_node("subdir")._value()
        try:
            folder = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        except OmegaConfBaseException as err:
            said = hydra_keys_said(str(subdir)) or str(err).strip().splitlines()[0]
            raise ConfigError(f"hydra.sweep.subdir={subdir} is invalid: {said}") from None
        if said := hydra_keys_said(str(subdir)):  # Hydra's resolver gives such a key as None
            raise ConfigError(f"hydra.sweep.subdir={subdir} is invalid: {said}")
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = os.path.abspath(folder)
    return folder


def shared_folder(folders: Sequence[Path]) -> tuple[int, int] | None:
    """The first two of ``folders`` (the jobs' folders, by :func:`number`) that are one
    folder, by their indices; None if each job has a folder of its own."""
    seen: dict[str, int] = {}
    for index, folder in enumerate(folders):
        first = seen.setdefault(os.path.abspath(folder), index)
        if first != index:
            return first, index
    return None


@contextlib.contextmanager
def as_job(cfg: DictConfig) -> Iterator[None]:
    """Meanwhile, the job config ``cfg`` (with its ``hydra`` node) is Hydra's config, as it
    is while the job runs: ``${hydra:job.num}`` and the like in it resolve to its own values
    (a sweeper checking its jobs would otherwise resolve them against the sweep's)."""
    hydra = HydraConfig.instance()
    before, hydra.cfg = hydra.cfg, cfg
    try:
        yield
    finally:
        hydra.cfg = before
