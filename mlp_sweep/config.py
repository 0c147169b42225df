"""The config schema, registered in Hydra's ConfigStore, and the checks Hydra cannot make.

The dataclasses give every key a type, so Hydra rejects a typo or a wrong type while it
composes the config, before anything trains. :func:`validate` then checks ranges and names
and raises :class:`ConfigError` with one line that names the key, the value and what is
allowed.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    InterpolationKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    UnsupportedInterpolationType,
)

from mlp_sweep import loggers
from mlp_sweep.errors import ConfigError
from mlp_sweep.records import COSTS, METRICS, OBJECTIVES

VARIANTS = ("softmax_ce", "sigmoid_mse")
ACTIVATIONS = ("sigmoid", "relu", "tanh")
IMAGES = ("mnist_5k", "mnist", "fashion_mnist")
DATASETS = (*IMAGES, "table", "arrays", "digits", "breast_cancer", "wine")
SCALES = ("standard", "minmax", "none")  # of table features; images are scaled to [0, 1]
ON_MISSING = ("error", "drop")  # rows with a missing or infinite value
# The data keys that only tables and arrays read.
TABLE_KEYS = ("path", "target", "features", "scale", "missing", "test_size", "test_path")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
CONSOLE_MODES = ("auto", "epochs")
INTERVALS = ("epoch", "batch")  # when a learning-rate scheduler steps


@dataclass
class ModelConfig:
    name: str = MISSING  # the output/loss variant: softmax_ce or sigmoid_mse
    activation: str = "sigmoid"  # of the hidden layers


@dataclass
class DataConfig:
    name: str = MISSING
    root: str | None = None  # folder holding MNIST/raw or FashionMNIST/raw
    download: bool = False
    val_size: Any = 0  # rows held out of training for validation: a count, or a fraction
    cache_dir: str | None = None  # None: $XDG_CACHE_HOME/mlp_sweep, else ~/.cache/mlp_sweep
    # Tables and arrays (docs/data.md); null for images.
    path: str | None = None  # data=table: .csv, .tsv or .parquet; data=arrays: .npz
    sha256: str | None = None  # data.path's content hash: what identifies the data, not its path
    target: str | None = None  # the column of labels
    features: list[str] | None = None  # null: every other column
    scale: str | None = None  # standard, minmax or none
    missing: str | None = None  # error, or drop the rows with a missing or infinite value
    test_size: Any = None  # a count or a fraction; null: 0.2, or none with data.test_path
    test_path: str | None = None  # a table of test rows of its own
    test_sha256: str | None = None


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    optimizer: Any = MISSING  # a `_target_` config, partial over the parameters
    scheduler: Any = None  # a `_target_` config from torch.optim.lr_scheduler, or None
    hidden: Any = 100  # an int, or a list of ints for several hidden layers
    init_std: float | None = 0.1  # None keeps PyTorch's default init
    batch_size: int = 100
    lr: float = 0.1
    epochs: int = 20
    seed: int = 1
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    objective: Any = "val_acc"  # a metric name, or a list of them for several objectives
    resume: bool = True  # continue from the run folder's checkpoint, if it has one
    retry_failed: bool = False  # continue a failed run from its last checkpoint
    trial: int | None = None  # the Optuna trial this run is; set by the search sweeper
    save_model: bool = True
    tags: list[str] = field(default_factory=list)
    logger: Any = field(default_factory=dict)  # the chosen `logger` group options, by name
    console: str = "auto"  # auto: per-epoch lines for one run, one line per job in a sweep


def register() -> None:
    """Register the schema and the resolvers the YAML configs use."""
    ConfigStore.instance().store(name="mlp_sweep_schema", node=Config)
    # A short random id makes sweep folders unique even when two start in the same second.
    # Cached, so every job of a sweep resolves it to the same value.
    OmegaConf.register_resolver("uid", _uid, use_cache=True, replace=True)
    # Names a study after its objective, one metric or several: val_acc, val_acc+n_params.
    OmegaConf.register_resolver("join", _join, replace=True)
    # A data file's content hash: data.sha256: ${sha256:${.path},${.cache_dir}}.
    OmegaConf.register_resolver("sha256", _sha256, use_cache=True, replace=True)


def is_search(overrides: Sequence[str]) -> bool:
    """Whether command-line overrides choose an Optuna search, which is always a multirun.

    >>> is_search(["hparams_search=optuna", "epochs=2"]), is_search(["hidden=50,100"])
    (True, False)
    >>> is_search(["hparams_search=null"])
    False
    """
    return any(o.startswith("hparams_search=") and o not in NO_SEARCH for o in overrides)


# `hparams_search=null`: no search, as the config's default says. Hydra takes no null for a
# config group on the command line, so the app drops it before Hydra sees it.
NO_SEARCH = ("hparams_search=null",)


def _uid() -> str:
    return uuid.uuid4().hex[:6]


def _sha256(path: str | None, cache_dir: str | None = None) -> str | None:
    """The content hash of a data file, or None if it is not set or cannot be read (the data
    check then says why)."""
    if path is None:
        return None
    from mlp_sweep.data.cache import content_hash  # here: the data package imports torch

    try:
        return content_hash(path, cache_dir)
    except OSError:
        return None


def _join(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, ListConfig) else str(value)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted keys.

    >>> flatten({"lr": 0.1, "optimizer": {"momentum": 0.9}})
    {'lr': 0.1, 'optimizer.momentum': 0.9}
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_alias(raw: Any) -> bool:
    """Whether an unresolved config value only repeats another key, such as ``${lr}``.

    >>> is_alias("${lr}"), is_alias("${oc.env:HOME}"), is_alias(0.1)
    (True, False, False)
    """
    return isinstance(raw, str) and _ALIAS.fullmatch(raw) is not None


_ALIAS = re.compile(r"\$\{[\w.]+\}")


def hidden_sizes(hidden: Any) -> list[int]:
    """Return the hidden layer widths as a list; raise ConfigError if they are not widths.

    >>> hidden_sizes(100), hidden_sizes([256, 128])
    ([100], [256, 128])
    """
    values = list(hidden) if isinstance(hidden, (list, tuple, ListConfig)) else [hidden]
    if not values or not all(_is_int(v) and v > 0 for v in values):
        raise ConfigError(
            f"hidden={show(hidden)} is invalid: must be a positive integer or a list of "
            "them, e.g. hidden=100 or hidden=[256,128]"
        )
    return [int(v) for v in values]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value a run cannot use.

    >>> from omegaconf import OmegaConf
    >>> validate(OmegaConf.create({"lr": -1}))
    Traceback (most recent call last):
    ...
    mlp_sweep.errors.ConfigError: lr=-1 is invalid: must be a number > 0
    """
    _check_keys(cfg)
    _check_references(cfg)
    _choice(cfg, "model.name", VARIANTS)
    _choice(cfg, "model.activation", ACTIVATIONS)
    _choice(cfg, "data.name", DATASETS)
    if "hidden" in cfg:
        hidden_sizes(cfg.hidden)
    init_std = cfg.get("init_std", 0.1)
    if init_std is not None and not (_is_number(init_std) and init_std > 0):
        raise ConfigError(
            f"init_std={show(init_std)} is invalid: must be a number > 0, or null for "
            "PyTorch's default init"
        )
    _positive(cfg, "lr", number=True)
    _positive(cfg, "batch_size")
    _positive(cfg, "epochs")
    _at_least(cfg, "seed", 0)
    _check_data(cfg)
    if cfg.get("threads") is not None:
        _positive(cfg, "threads")
    _check_device(cfg.get("device", "auto"))
    _check_optimizer(cfg)
    _check_scheduler(cfg)
    check_objective(cfg)
    _choice(cfg, "console", CONSOLE_MODES)
    loggers.check(cfg)


def _check_keys(cfg: DictConfig) -> None:
    """Reject keys added with ``+key=value`` that nothing reads."""
    sections = {"": Config, "model.": ModelConfig, "data.": DataConfig}
    for prefix, schema in sections.items():
        node = OmegaConf.select(cfg, prefix.rstrip(".")) if prefix else cfg
        if not isinstance(node, DictConfig):
            continue
        known = {f.name for f in fields(schema)} | ({"hydra"} if not prefix else set())
        for key in node:
            if key not in known:
                allowed = ", ".join(sorted(known - {"hydra"}))
                raise ConfigError(f"{prefix}{key} is not a config key; allowed: {allowed}")


def _check_references(cfg: DictConfig) -> None:
    """Reject a value that refers to a key the config lacks (``${x}``) or to a resolver
    nobody registered (``${nowhere:x}``), and one a resolver refuses (``${oc.env:UNSET}``,
    ``${hydra:job.nope}``): a run would stop on it only once it took its folder. (A sweeper
    checks each job as that job, :func:`mlp_sweep.compose.as_job`, so ``${hydra:...}``
    resolves as it will when the job runs.)"""
    # The top-level knobs first: ``optimizer.lr: ${lr}`` fails because of ``lr``.
    keys = sorted(
        (k for k in cfg if k != "hydra"),
        key=lambda k: isinstance(cfg._get_node(k), (DictConfig, ListConfig)),
    )
    for key in keys:
        node = cfg._get_node(key)
        raw = OmegaConf.to_container(node) if isinstance(node, (DictConfig, ListConfig)) else node
        for where, value in _strings(raw, str(key)):
            if "${hydra." in value:
                # A sweeper checks a job's config with its hydra node, where this resolves; the
                # job's own config has none, so each job would fail.
                raise ConfigError(
                    f"{where} is invalid: {value} refers to the hydra node, which a job's "
                    "config does not hold; Hydra's resolver reads it: "
                    f"{value.replace('${hydra.', '${hydra:')}"
                )
            if (said := hydra_keys_said(value)) is not None:
                # Hydra's resolver gives None for a key it lacks: init_std would be null.
                raise ConfigError(f"{where} is invalid: {said}")
    for key in keys:
        try:
            value = cfg[key]
            if isinstance(value, (DictConfig, ListConfig)):
                OmegaConf.to_container(value, resolve=True)
        except (InterpolationKeyError, UnsupportedInterpolationType) as err:
            reason = str(err).splitlines()[0]  # the lines below repeat the key and its types
            raise ConfigError(f"{err.full_key} is invalid: {reason}") from None
        except InterpolationResolutionError as err:  # a resolver refused (${oc.env:UNSET})
            raise ConfigError(f"{err.full_key} is invalid: {resolver_said(err)}") from None
        except OmegaConfBaseException:
            pass


def resolver_said(err: InterpolationResolutionError) -> str:
    """What the resolver that raised ``err`` said, without OmegaConf's wrapping.

    >>> from omegaconf import OmegaConf
    >>> try:
    ...     OmegaConf.create({"lr": "${oc.env:MLP_SWEEP_UNSET}"}).lr
    ... except InterpolationResolutionError as err:
    ...     resolver_said(err)
    "Environment variable 'MLP_SWEEP_UNSET' not found"
    """
    first = str(err).strip().splitlines()[0]
    said = re.fullmatch(r"\w+ raised while resolving interpolation: \"?(.+?)\"?", first)
    return said.group(1) if said else first


def _strings(raw: Any, key: str) -> Iterator[tuple[str, str]]:
    """Each unresolved string under ``key``, with its key as OmegaConf names it
    (``tags[0]``)."""
    if isinstance(raw, dict):
        for name, value in raw.items():
            yield from _strings(value, f"{key}.{name}")
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            yield from _strings(value, f"{key}[{i}]")
    elif isinstance(raw, str):
        yield key, raw
    elif hasattr(raw, "_value") and isinstance(raw._value(), str):
        yield key, raw._value()


def hydra_keys_said(value: str, sweep: bool = False) -> str | None:
    """What is wrong with a key that ``value`` reads from the job's Hydra config
    (``${hydra:job.num}``): one it lacks, whose value Hydra's resolver gives as None, or one
    without a value in a single run (or, if ``sweep``, in the sweep's own config); None if
    nothing is, or no Hydra config is set."""
    if "${hydra:" not in value or not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    for path in re.findall(r"\$\{hydra:\s*([^${}:\s]+)\s*\}", value):
        path = path.strip("'\"")  # ${hydra:'job.name'}: a quoted key
        try:
            found = OmegaConf.select(hydra, path, default=_ABSENT, throw_on_missing=True)
        except MissingMandatoryValue:
            if sweep:
                return (
                    f"${{hydra:{path}}} has no value for the sweep as a whole: Hydra sets it "
                    "for each job (name their folders with hydra.sweep.subdir)"
                )
            return (
                f"${{hydra:{path}}} has no value in a single run: Hydra sets it for each job "
                "of a sweep (-m)"
            )
        if found is _ABSENT:
            return f"${{hydra:{path}}} names no key of the job's Hydra config (hydra.{path})"
    return None


_ABSENT = object()


def check_folder(mode: str) -> None:
    """Refuse the folder of a single run or of a sweep (``mode``: ``run`` or ``sweep``)
    whose name reads a key of Hydra's config without a value: Hydra's resolver gives such a
    key as None (a folder ``out/run_None``), and the jobs of a sweep each resolve
    ``${hydra:job.num}`` to their own (a sweep folder per job, the summary in the last)."""
    raw = str(HydraConfig.get()[mode]._get_node("dir")._value())
    if said := hydra_keys_said(raw, sweep=mode == "sweep"):
        raise ConfigError(f"hydra.{mode}.dir={raw} is invalid: {said}")


def _check_data(cfg: DictConfig) -> None:
    _size(cfg, "data.val_size")
    _size(cfg, "data.test_size")
    _choice(cfg, "data.scale", SCALES)
    _choice(cfg, "data.missing", ON_MISSING)
    name = OmegaConf.select(cfg, "data.name")
    if name in IMAGES:
        for key in TABLE_KEYS:
            if OmegaConf.select(cfg, f"data.{key}") is not None:
                raise ConfigError(
                    f"data.{key} is invalid with data.name={name}: it is read by data=table "
                    "and data=arrays"
                )


def _size(cfg: DictConfig, key: str) -> None:
    """A split's size: a whole number of rows >= 0, or a fraction of them in (0, 1)."""
    value = OmegaConf.select(cfg, key)
    if value is None or (_is_int(value) and value >= 0):
        return
    if not (isinstance(value, float) and 0 < value < 1):
        raise ConfigError(
            f"{key}={show(value)} is invalid: must be a whole number of rows >= 0, or a "
            "fraction of them between 0 and 1"
        )


def _check_device(device: str) -> None:
    name, _, index = str(device).partition(":")
    if name not in ("auto", "cpu", "cuda", "mps") or (index and name != "cuda"):
        raise ConfigError(f"device={device!r} is invalid: allowed: {', '.join(DEVICES)}")
    if index and not index.isdigit():
        raise ConfigError(f"device={device!r} is invalid: cuda:N needs an integer N")


def _check_optimizer(cfg: DictConfig) -> None:
    target = OmegaConf.select(cfg, "optimizer._target_")
    if target is None:
        return
    try:
        _locate(target)
    except Exception:
        raise ConfigError(
            f"optimizer._target_={target!r} is invalid: must name an importable optimizer "
            "class such as torch.optim.SGD"
        ) from None


def _locate(target: str) -> None:
    """Hydra's ``get_method(target)``, without the error lines it logs when it fails: the
    caller's own line says what is wrong (and a run's log file would keep its folder)."""
    hydra_log = logging.getLogger("hydra.utils")
    level = hydra_log.level
    hydra_log.setLevel(logging.CRITICAL + 1)
    try:
        get_method(target)
    finally:
        hydra_log.setLevel(level)


def _check_scheduler(cfg: DictConfig) -> None:
    scheduler = cfg.get("scheduler")
    if scheduler is None:
        return
    interval = scheduler.get("interval", "epoch")
    if interval not in INTERVALS:
        raise ConfigError(
            f"scheduler.interval={show(interval)} is invalid: allowed: {', '.join(INTERVALS)}"
        )
    target = scheduler.get("_target_")
    try:
        _locate(target)
    except Exception:
        raise ConfigError(
            f"scheduler._target_={target!r} is invalid: must name an importable scheduler "
            "class such as torch.optim.lr_scheduler.CosineAnnealingLR"
        ) from None


def check_objective(cfg: DictConfig) -> None:
    """Raise ConfigError unless ``cfg.objective`` is a metric a sweep may rank runs by (or a
    list of two or more), which its data set can measure."""
    objective = cfg.get("objective", "val_acc")
    if isinstance(objective, ListConfig):
        _check_objectives(cfg, list(objective))
        return
    if objective not in OBJECTIVES:
        reason = "the test set is never used to choose settings; " if objective in METRICS else ""
        raise ConfigError(
            f"objective={objective!r} is invalid: {reason}allowed: {', '.join(OBJECTIVES)}"
        )
    if objective.startswith("val_") and OmegaConf.select(cfg, "data.val_size") == 0:
        raise ConfigError(
            f"objective={objective!r} needs a validation set but data.val_size=0: set "
            "data.val_size > 0 or objective=train_acc / train_loss"
        )


def check_comparable(objective: Any, variants: set[str]) -> None:
    """Raise ConfigError if a sweep would rank the losses of different variants against each
    other: an MSE of sigmoid outputs and a cross-entropy are on different scales.

    >>> check_comparable("val_loss", {"softmax_ce", "sigmoid_mse"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlp_sweep.errors.ConfigError: objective=val_loss cannot rank runs of both sigmoid_mse and ...
    """
    names = [objective] if isinstance(objective, str) else [str(n) for n in objective]
    for name in names:
        if name.endswith("_loss") and len(variants) > 1:
            raise ConfigError(
                f"objective={name} cannot rank runs of both {' and '.join(sorted(variants))}: "
                "their losses are on different scales (an MSE of sigmoid outputs, a "
                f"cross-entropy); use objective={name.replace('_loss', '_acc')}, or sweep "
                "one model"
            )


def check_one_objective(objectives: Sequence[Any]) -> None:
    """Raise ConfigError if the jobs of a sweep, whose ``objectives`` these are (job by job),
    do not share one: its summary ranks all its runs by one.

    >>> check_one_objective(["val_acc", ["val_acc", "n_params"]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlp_sweep.errors.ConfigError: objective differs between the jobs of this sweep (val_acc in \
job 0, [val_acc,n_params] in job 1): ...
    """
    first: dict[str, int] = {}  # each objective, as written, and the first job that has it
    for num, objective in enumerate(objectives):
        names = [objective] if isinstance(objective, str) else [str(n) for n in objective]
        first.setdefault(names[0] if len(names) == 1 else f"[{','.join(names)}]", num)
    if len(first) > 1:
        where = ", ".join(f"{shown} in job {num}" for shown, num in first.items())
        raise ConfigError(
            f"objective differs between the jobs of this sweep ({where}): a sweep ranks all "
            "its runs by one objective; give one for the whole sweep, e.g. "
            f"objective={next(iter(first))}"
        )


def _check_objectives(cfg: DictConfig, names: list[Any]) -> None:
    """A list objective: two or more different metrics, each an accuracy, a loss or a cost."""
    shown = f"objective={show(names)}"
    if len(names) < 2 or len(set(map(str, names))) < len(names):
        raise ConfigError(
            f"{shown} is invalid: a list needs two or more different metrics; for one, write "
            "it alone, e.g. objective=val_acc"
        )
    allowed = (*OBJECTIVES, *COSTS)
    for name in names:
        if name not in allowed:
            reason = "the test set is never used to choose settings; " if name in METRICS else ""
            raise ConfigError(
                f"{shown} is invalid: {show(name)} cannot be an objective: {reason}allowed: "
                f"{', '.join(allowed)}"
            )
        if name.startswith("val_") and OmegaConf.select(cfg, "data.val_size") == 0:
            raise ConfigError(
                f"{shown} needs a validation set for {name} but data.val_size=0: set "
                "data.val_size > 0 or use train_acc / train_loss"
            )


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and value not in allowed:
        raise ConfigError(f"{key}={value!r} is invalid: allowed: {', '.join(allowed)}")


def _positive(cfg: DictConfig, key: str, number: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None:
        return
    ok = _is_number(value) if number else _is_int(value)
    if not ok or value <= 0:
        kind = "a number" if number else "an integer"
        raise ConfigError(f"{key}={show(value)} is invalid: must be {kind} > 0")


def _at_least(cfg: DictConfig, key: str, low: int) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and not (_is_int(value) and value >= low):
        raise ConfigError(f"{key}={show(value)} is invalid: must be an integer >= {low}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def show(value: Any) -> str:
    """A value as an error message names it: strings quoted, lists as lists, true, false and
    null as a config writes them.

    >>> show("xyz"), show([2, 0.9]), show(True), show(None), show([0.9, None, True])
    ("'xyz'", '[2, 0.9]', 'true', 'null', '[0.9, null, true]')
    """
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, list):
        return f"[{', '.join(map(show, value))}]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return repr(value) if isinstance(value, str) else str(value)


# Wherever a config is composed or resolved, this module is imported (by the Hydra app, the
# plugins, the jobs): the schema and resolvers are there. `import mlp_sweep` alone does not
# need Hydra (`mlp-sweep collect`, `compare`).
register()
