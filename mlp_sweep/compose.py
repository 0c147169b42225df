"""Composing the jobs of a sweep, each exactly as Hydra's ``load_sweep_config`` composes it.

Hydra composes every job from scratch: it builds the defaults list, reads every config file and
merges them over the schema, which costs more than training a one-epoch job. Most jobs of a
grid differ from an earlier job only in the values of plain ``key=value`` overrides
(``hidden=50`` and ``hidden=100``, with the same config group choices). Such a job starts from
a copy of the earlier job's config, and its own values are applied by Hydra's own override
code, the last step of Hydra's own composition. Everything else is composed by Hydra: the
first job of each shape, a config group choice that differs (``model=...``), ``+key``,
``++key``, ``~key``, ``key=append(...)``, a dict value, and any ``hydra.`` key.
``tests/test_compose.py`` compares the two ways across every kind of override.
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
    job that only changes values of an earlier job's plain overrides copied from it."""

    def __init__(self, loader: Any, master: DictConfig) -> None:
        self._loader = loader
        self._master = master
        self._parser = OverridesParser.create(config_loader=loader)
        # A shape (the overrides with their plain values left out) -> its first job's config
        # and parsed overrides.
        self._first: dict[tuple[Any, ...], tuple[DictConfig, list[Override]]] = {}

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self._parser.parse_overrides(list(overrides))
        shape = tuple(self._shape(o) for o in parsed)
        first = self._first.get(shape)
        if first is not None:
            cfg = _from(first[0], first[1], parsed, self._master)
            if cfg is not None:
                return cfg
        cfg = self._loader.load_sweep_config(self._master, list(overrides))
        if first is None:
            self._first[shape] = (_copy(cfg), parsed)
        return cfg

    def _shape(self, override: Override) -> Any:
        """``("value", key)`` for an override whose value alone may differ between jobs of
        one shape; its whole line for any other."""
        if _plain(override) and not self._names_config(override.key_or_group):
            return ("value", override.key_or_group)
        return ("line", override.input_line)

    def _names_config(self, key: str) -> bool:
        repository = getattr(self._loader, "repository", None)
        if repository is None:
            return True
        return repository.group_exists(key) or repository.config_exists(key)


def _plain(override: Override) -> bool:
    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and not override.is_list_extend()
        and not override.key_or_group.startswith("hydra")
        and not isinstance(override.value(), dict)
    )


def _from(
    first: DictConfig, first_overrides: list[Override], overrides: list[Override], master: Any
) -> DictConfig | None:
    """The config of a job of ``first``'s shape, or None where another override touches a
    key whose value differs (the order of the two would then matter)."""
    changed = [
        new for old, new in zip(first_overrides, overrides) if old.input_line != new.input_line
    ]
    keys = [o.key_or_group for o in overrides]
    for override in changed:
        key = override.key_or_group
        if sum(k == key or k.startswith(f"{key}.") or key.startswith(f"{k}.") for k in keys) > 1:
            return None
    cfg = _copy(first)
    ConfigLoaderImpl._apply_overrides_to_config(changed, cfg)
    cfg.hydra.overrides.task = [o.input_line for o in overrides if not o.is_hydra_override()]
    OmegaConf.copy_cache(from_config=master, to_config=cfg)
    return cfg


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
        try:
            folder = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        except OmegaConfBaseException as err:
            subdir = cfg.hydra.sweep._get_node("subdir")._value()
            said = hydra_keys_said(str(subdir)) or str(err).strip().splitlines()[0]
            raise ConfigError(f"hydra.sweep.subdir={subdir} is invalid: {said}") from None
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = os.path.abspath(folder)
    return folder


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
