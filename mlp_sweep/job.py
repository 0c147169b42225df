"""One run: a composed config in, metrics and a trained model in the job folder out."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import inspect
import json
import logging
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import checkpoint, console, drawing, interrupts, loggers, objectives, records
from mlp_sweep import data as data_mod
from mlp_sweep.config import flatten, hidden_sizes, is_alias, show, validate
from mlp_sweep.errors import ConfigError, RunFailed, one_line
from mlp_sweep.launchers import use_threads
from mlp_sweep.model import LOSSES, MLP, count_params
from mlp_sweep.schedule import Schedule, build_schedule
from mlp_sweep.train import Diverged, evaluate, fit

log = logging.getLogger(__name__)

_VERSIONS = ("torch", "torchvision", "hydra-core", "omegaconf", "optuna", "numpy")
# What an optimizer config may build with `_target_` (Hydra's execution whitelist). Given at the
# call, not only by run.py, so jobs in other processes (joblib, submitit) check it too.
OPTIMIZERS = ("torch.optim.*",)


def check(cfg: DictConfig) -> None:
    """Raise ConfigError for anything in ``cfg`` that would fail a run before its first epoch:
    a value out of range, a device this machine lacks, a validation split the data set cannot
    give, optimizer settings the optimizer refuses. The sweepers call it for every job before
    the first one starts; each run calls it again."""
    validate(cfg)
    device = pick_device(cfg.device)
    data_mod.check(cfg.data)
    _check_optimizer(cfg.optimizer, device)


def pick_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other name is used as given, if this
    machine has it."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = (device.type == "cuda" and (device.index or 0) >= cuda) or (
        device.type == "mps" and not torch.backends.mps.is_available()
    )
    if missing:
        here = ["auto", "cpu"] + (["cuda", *(f"cuda:{i}" for i in range(cuda))] if cuda else [])
        here += ["mps"] if torch.backends.mps.is_available() else []
        raise ConfigError(
            f"device={name!r} is invalid: this machine has no such device; allowed here: "
            f"{', '.join(here)}"
        )
    return device


def _check_optimizer(cfg: DictConfig, device: torch.device) -> None:
    """Build the optimizer over a dummy layer on ``device`` and take one step: some settings
    (``capturable=true`` on a CPU) are refused only by the first step. Settings that passed
    are not built again in this process: a grid's jobs mostly share them."""
    settings = _settings(cfg)
    key = (settings, str(device))
    if settings is not None and key in _OPTIMIZERS_CHECKED:
        return
    _check_types(cfg)
    _step_once(cfg, device)
    _OPTIMIZERS_CHECKED.add(key)


def _check_types(cfg: DictConfig) -> None:
    """Refuse a setting of another type than its torch.optim class takes, which the class
    itself would train with (``momentum=true`` is a momentum of 1, ``maximize=yes`` climbs
    the loss): true or false where its default is one, a number where it is a number, as
    many numbers where it is a tuple of them (``betas``)."""
    cls = _optimizer_class(cfg.get("_target_"))
    if cls is None:
        return  # not a torch.optim class: building it says what is wrong
    defaults = inspect.signature(cls).parameters
    for key in cfg:
        if key not in defaults or not isinstance(key, str) or key.startswith("_"):
            continue
        try:
            value = _resolved(cfg, key)
        except Exception:
            continue  # a value that does not resolve: building the optimizer says which
        default, wanted = defaults[key].default, None
        if isinstance(default, bool) or (default is None and key in ("foreach", "fused")):
            if not isinstance(value, bool) and not (default is None and value is None):
                wanted = "true or false" + (", or null" if default is None else "")
        elif _number(default) and not _number(value):
            wanted = "a number"
        elif isinstance(default, tuple) and all(map(_number, default)):
            listed = isinstance(value, (list, tuple)) and len(value) == len(default)
            if not listed or not all(map(_number, value)):
                wanted = f"a list of {len(default)} numbers"
        if wanted is not None:
            raise ConfigError(
                f"optimizer.{key}={show(value)} is invalid: {cfg.get('_target_')} takes {wanted}"
            )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optimizer_class(target: Any) -> type | None:
    """The torch.optim class ``target`` names (``torch.optim.SGD``), found without importing
    anything; None for any other target."""
    parts = str(target).split(".")
    if parts[:2] != ["torch", "optim"]:
        return None
    found: Any = torch
    for part in parts[1:]:
        found = getattr(found, part, None)
    return found if isinstance(found, type) and issubclass(found, torch.optim.Optimizer) else None


_OPTIMIZERS_CHECKED: set[tuple[str | None, str]] = set()


def _settings(cfg: DictConfig) -> str | None:
    """An optimizer config's resolved settings as one string (None if a value does not
    resolve: building the optimizer then says which)."""
    try:
        return json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=repr)
    except Exception:
        return None


def _step_once(cfg: DictConfig, device: torch.device) -> None:
    layer = torch.nn.Linear(1, 1).to(device)
    optimizer = build_optimizer(cfg, layer)
    layer(torch.ones(1, 1, device=device)).sum().backward()
    try:
        optimizer.step()
    except (RuntimeError, AssertionError, ValueError, TypeError) as err:
        raise ConfigError(_refused(cfg, err, "cannot take a step with it here")) from None


def _refused(cfg: DictConfig, err: BaseException, why: str) -> str:
    """The line that says an optimizer config failed with ``err``: naming the settings the
    error names (a word of its text, or its singular: ``betas`` in "beta parameter"); when
    it names none, the settings that differ from the class's defaults, as the context.

    >>> cfg = OmegaConf.create({"_target_": "torch.optim.SGD", "momentum": 0.9, "foo": 1})
    >>> print(_refused(cfg, TypeError("unexpected keyword argument 'foo'"), "cannot be built"))
    optimizer.foo=1 is invalid: torch.optim.SGD cannot be built: unexpected keyword argument 'foo'
    >>> print(_refused(cfg, ValueError("a leaf Variable"), "cannot be built"))
    optimizer (torch.optim.SGD) cannot be built with optimizer.momentum=0.9: a leaf Variable
    """
    target, text = cfg.get("_target_"), str(err).lower()

    def named(key: str) -> bool:
        words = {key.lower(), key.lower().removesuffix("s")}
        return any(re.search(rf"\b{re.escape(word)}\b", text) for word in words)

    cls = _optimizer_class(target)
    keys = [k for k in cfg if isinstance(k, str) and not k.startswith("_") and named(k)]
    if keys and cls is not None:  # another target (StepLR) is the fault, not its settings
        settings = ", ".join(f"optimizer.{k}={_shown(cfg, k)}" for k in keys)
        return f"{settings} is invalid: {target} {why}: {one_line(err)}"
    defaults = inspect.signature(cls).parameters if cls is not None else {}
    changed = [
        f"optimizer.{k}={_shown(cfg, k)}"
        for k in defaults
        if k in cfg and _value(cfg, k) != defaults[k].default
    ]
    context = f" with {', '.join(changed)}" if changed else ""
    return f"optimizer ({target}) {why.replace(' with it', '')}{context}: {one_line(err)}"


def _resolved(cfg: DictConfig, key: str) -> Any:
    """``cfg[key]`` resolved, as plain Python (raises if it does not resolve)."""
    value = cfg[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _value(cfg: DictConfig, key: str) -> Any:
    """``cfg[key]`` as the optimizer gets it, a list as a tuple (its defaults are tuples)."""
    try:
        value = _resolved(cfg, key)
    except Exception:
        return None
    return tuple(value) if isinstance(value, list) else value


def _shown(cfg: DictConfig, key: str) -> str:
    """``cfg[key]`` as a message names it: resolved if it resolves, else as written."""
    try:
        return show(_resolved(cfg, key))
    except Exception:
        return show(cfg._get_node(key)._value())


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Instantiate the optimizer config over the model's parameters."""
    try:
        return _optimizer_partial(cfg)(model.parameters())
    except InstantiationException as err:  # Hydra's: a target it cannot or may not build
        target = cfg.get("_target_")
        raise ConfigError(f"optimizer ({target}) cannot be built: {one_line(err)}") from None
    except Exception as err:  # the class refused its settings, whatever it raised
        raise ConfigError(_refused(cfg, err, "cannot be built with it")) from None


def _optimizer_partial(cfg: DictConfig) -> Callable[..., torch.optim.Optimizer]:
    """The optimizer class with the config's arguments bound (``_partial_``), instantiated by
    Hydra once per process for each setting: a grid's jobs mostly share one, and Hydra's
    instantiate takes longer than building the optimizer. Each call gets arguments of its own."""
    settings = _settings(cfg)
    made = _OPTIMIZER_PARTIALS.get(settings) if settings is not None else None
    if made is None:
        made = instantiate(cfg, _execution_whitelist_=OPTIMIZERS)
        if settings is None or not isinstance(made, functools.partial):
            return made
        _OPTIMIZER_PARTIALS[settings] = made
    return functools.partial(made.func, *made.args, **copy.deepcopy(made.keywords))


_OPTIMIZER_PARTIALS: dict[str, functools.partial] = {}


def params_of(cfg: DictConfig, overridden: Iterable[str] = ()) -> dict[str, Any]:
    """The hyperparameters of a run, flat (``optimizer.momentum``), with ``hidden`` a list.

    Keys that say how to build rather than what (``_target_``) and the config's own aliases
    of another key (``optimizer.lr: ${lr}``) are left out; a key ``overridden`` on the command
    line is kept even when its value is an interpolation (``batch_size=${hidden}``).
    """
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    kept = set(overridden)
    params = {
        key: value
        for key, value in flatten(OmegaConf.to_container(cfg, resolve=True)).items()
        if not key.rsplit(".", 1)[-1].startswith("_") and (key in kept or not is_alias(raw[key]))
    }
    params["hidden"] = hidden_sizes(cfg.hidden)
    return params


def override_keys(overrides: Iterable[str]) -> list[str]:
    """The keys that command-line overrides set.

    >>> override_keys(["hidden=50", "+extra=1", "++lr=0.2", "~tags"])
    ['hidden', 'extra', 'lr', 'tags']
    """
    return [o.split("=", 1)[0].lstrip("+~") for o in overrides]


def run(cfg: DictConfig) -> float | list[float]:
    """Train one configuration in the current Hydra job folder and return its objective.

    What the folder already holds decides what happens (:func:`checkpoint.plan`): a complete
    run of this config is kept as it is, a checkpoint is continued, a folder holding another
    run is refused before anything in it changes. A run writes metrics.json and checkpoint.pt
    after every epoch, then history.csv, curves.png and model.pt. In an Optuna search
    (``cfg.trial`` set) each epoch's objective goes to the study, and a pruned run returns
    its last one; with several objectives (``objective=[val_acc,n_params]``) a run returns a
    list, one value each. The members of a stacked group (:mod:`mlp_sweep.stacked_launcher`) go
    through the same lifecycle: :func:`prepare`, :func:`begin`, :func:`end_epoch`, then
    :func:`complete` or :func:`stopped`.
    """
    life = prepare(cfg, HydraConfig.get())
    if life.settled:
        return settle(life)
    return train(life)


def train(life: Life, progress: bool | None = None) -> float | list[float]:
    """Train the run ``life`` (prepared, not settled) alone, from its checkpoint if it has
    one, and return its objective (see :func:`run`). ``progress``: whether it shows a bar
    and its epochs on the console's own handlers (None: :func:`console.show_epochs`)."""
    cfg, hydra_cfg = life.cfg, life.hydra_cfg
    if progress is None:
        progress = console.show_epochs(cfg, hydra_cfg)
    use_threads(cfg.threads, hydra_cfg.launcher)
    splits = load_data(cfg, life.device)
    model, optimizer, generator = build(cfg, splits, life.device)
    life.schedule = schedule(cfg, optimizer, splits)
    try:
        begin(life, model, optimizer, generator, preprocess=splits.preprocess)
        fit(
            model,
            LOSSES[cfg.model.name],
            optimizer,
            splits,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            generator=generator,
            first_epoch=life.record.data["epochs_run"] + 1,
            on_epoch=lambda epoch: end_epoch(life, epoch, model, optimizer, generator),
            progress=progress,
            schedule=life.schedule,
        )
        final = {}
        for split in ("train", "val", "test"):
            final[f"{split}_loss"], final[f"{split}_acc"] = evaluate(
                model, LOSSES[cfg.model.name], getattr(splits, split)
            )
    except BaseException as err:
        return stopped(life, err)
    return complete(life, model, final)


@dataclass
class Life:
    """One run between :func:`prepare` and its end: its config, folder, plan and record."""

    cfg: DictConfig
    hydra_cfg: DictConfig  # the job's Hydra node (``HydraConfig.get()``)
    full_cfg: DictConfig  # config and Hydra node together, as .hydra/hydra.yaml records it
    out: Path
    device: torch.device
    plan: checkpoint.Plan
    started: float
    record: RunRecord = field(init=False)
    report: Callable[[dict[str, float]], None] | None = field(init=False, default=None)
    schedule: Schedule | None = field(init=False, default=None)  # a learning-rate schedule

    @property
    def settled(self) -> bool:
        """Whether the folder holds this run finished or failed already: nothing to train."""
        return self.plan.action in (checkpoint.KEEP, checkpoint.KEEP_FAILED)


def prepare(cfg: DictConfig, hydra_cfg: DictConfig, full_cfg: DictConfig | None = None) -> Life:
    """Check ``cfg`` and decide what the run does with its folder; nothing is written.
    Raises ConfigError for bad input or a folder the run may not use."""
    interrupts.check()  # Ctrl-C pressed, and lost where Python drops it: no further job
    started = time.perf_counter()
    check(cfg)
    study = OmegaConf.select(hydra_cfg, "sweeper.study_name", default=None)
    if cfg.trial is not None and study is None:
        raise ConfigError(
            f"trial={cfg.trial} is invalid here: the search sweeper sets it for the runs of a "
            "study (hparams_search=...); leave it unset"
        )
    out = Path(hydra_cfg.runtime.output_dir)
    device = pick_device(cfg.device)
    decided = checkpoint.plan(out, cfg, device)
    full = HydraConfig.instance().cfg if full_cfg is None else full_cfg
    return Life(cfg, hydra_cfg, full, out, device, decided, started)


def settle(life: Life) -> float | list[float]:
    """The objective of a run kept as it is, or the error of one kept failed."""
    if life.plan.action == checkpoint.KEEP_FAILED:
        raise kept_failure(life.out, life.plan.error)
    value = math.nan if life.plan.value is None else life.plan.value
    shown = objectives.show(life.cfg.objective, value)
    log.info("%s is complete already: %s; kept as it is", life.out, shown)
    return value


def load_data(cfg: DictConfig, device: torch.device) -> data_mod.Splits:
    """The run's data set, split, on ``device`` (loaded once per process)."""
    return data_mod.load_data(cfg.data, device)


def build(
    cfg: DictConfig, splits: data_mod.Splits, device: torch.device
) -> tuple[MLP, torch.optim.Optimizer, torch.Generator]:
    """The run's model (initialised from its seed), optimizer, and batch-order generator."""
    torch.manual_seed(cfg.seed)
    model = MLP(
        splits.num_features,
        hidden_sizes(cfg.hidden),
        splits.num_classes,
        activation=cfg.model.activation,
        init_std=cfg.init_std,
    ).to(device)
    optimizer = build_optimizer(cfg.optimizer, model)
    return model, optimizer, torch.Generator().manual_seed(cfg.seed)


def schedule(
    cfg: DictConfig, optimizer: torch.optim.Optimizer, splits: data_mod.Splits
) -> Schedule | None:
    """The run's learning-rate schedule over ``optimizer`` (None without a ``scheduler``);
    build it before :func:`begin`, which restores its state from a checkpoint."""
    steps_per_epoch = math.ceil(len(splits.train) / cfg.batch_size)
    return build_schedule(cfg.scheduler, optimizer, steps_per_epoch, epochs=cfg.epochs)


def begin(
    life: Life,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    stacked: dict[str, Any] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> None:
    """Take the folder for the run: write .hydra/ and metrics.json, load the checkpoint it
    continues from, connect the study and the loggers. ``stacked`` says, in metrics.json,
    which group the run trains in; ``preprocess``, how a table's rows became its inputs
    (preprocess.json, which ``mlp-sweep predict`` applies to new rows)."""
    cfg, out = life.cfg, life.out
    record = _take_folder(life, stacked)
    if preprocess is not None:
        records.write_json(out / records.PREPROCESS_FILE, preprocess)
    state = life.plan.state
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if life.schedule is not None:
            life.schedule.scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        record.resume(state["record"])
        log.info("continuing %s after epoch %d", out, record.data["epochs_run"])
    if cfg.trial is not None:
        study = OmegaConf.select(life.hydra_cfg, "sweeper.study_name", default=None)
        from mlp_sweep.study import trial_reporter  # Optuna: only a search's trials need it

        life.report = trial_reporter(
            cfg.trial, life.hydra_cfg.sweeper, cfg.objective, out, cfg.epochs
        )
        record.data["trial"] = {"number": cfg.trial, "study": study}
    record.loggers = loggers.start(cfg, out, record.data)  # TensorBoard, MLflow: loggers.py


def _take_folder(life: Life, stacked: dict[str, Any] | None = None) -> RunRecord:
    """Write the run's .hydra/ and first metrics.json over what an earlier attempt left."""
    # An earlier attempt's files, which this one replaces; a run that continues one keeps
    # them but its figure, of the epochs before only (a figure lost now is drawn anew).
    stale = _OUTPUT_FILES if life.plan.action == checkpoint.FRESH else (records.CURVES_FILE,)
    for name in stale:
        (life.out / name).unlink(missing_ok=True)
    _write_hydra_record(life.out, life.cfg, life.hydra_cfg, life.full_cfg)
    life.record = RunRecord(
        life.out, life.cfg, life.hydra_cfg, life.device, life.started, stacked=stacked
    )
    life.record.save()  # the run's own from here: a run stopped now is recorded as stopped
    return life.record


def end_epoch(
    life: Life,
    epoch: dict[str, float],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    """Record a finished epoch: metrics.json, checkpoint.pt, the loggers, the study (whose
    pruner may raise ``optuna.TrialPruned``)."""
    record = life.record
    # Ctrl-C meanwhile waits for both writes: a run stopped as it saved an epoch would say
    # it holds that epoch beside a checkpoint without it, and start it over.
    with interrupts.deferred():
        record.add_epoch(epoch)
        # The checkpoint first: a run killed between the two writes resumes from this epoch.
        checkpoint.save(
            life.out / records.CHECKPOINT_FILE,
            model=model,
            optimizer=optimizer,
            generator=generator,
            record=record.data,
            scheduler=life.schedule.scheduler if life.schedule is not None else None,
        )
        record.save()
    record.loggers.log_epoch({**epoch, "lr": optimizer.param_groups[0]["lr"]})
    if life.report is not None:
        life.report(epoch)


def complete(life: Life, model: torch.nn.Module, final: dict[str, float]) -> float | list[float]:
    """Finish a run that trained all its epochs: model.pt, then its final record, with its
    trainable parameter count (``n_params``) beside the split metrics ``final``."""
    cfg, record = life.cfg, life.record
    final = {**final, "n_params": count_params(model)}
    # The training time is the `seconds` metric: a cost some searches minimise.
    value = objectives.value({**final, "seconds": record.data["seconds"]["train"]}, cfg.objective)
    try:
        if cfg.save_model:
            records.write_torch(life.out / records.MODEL_FILE, model.state_dict())
        record.finish(records.COMPLETE, objective=value, final=final)
    except BaseException as err:  # a failed write, or Ctrl-C while writing: not complete
        if record.ended:
            raise  # metrics.json says complete already: that stays
        return stopped(life, err)
    log.info(
        "%s  %s  test_acc %.4f  (%d epochs, %.1fs)",
        life.out.name,
        objectives.show(cfg.objective, value),
        final["test_acc"],
        record.data["epochs_run"],
        record.data["seconds"]["total"],
    )
    return value


def stopped(life: Life, err: BaseException) -> float:
    """End a run that stopped before completing: a pruned trial returns its last objective;
    an interrupt, a divergence or any other error is recorded, then raised (a divergence as
    RunFailed). A run stopped before :func:`begin` (its group's data failed to load) takes
    a fresh folder first, so that its metrics.json says how it ended; a folder holding an
    earlier run is left as it was, as a solo run that fails to load its data leaves it."""
    if not hasattr(life, "record"):
        if (life.out / records.METRICS_FILE).exists():
            raise err
        _take_folder(life)
    record = life.record
    if _pruned(err):
        value = record.data["history"][-1][life.cfg.objective]
        record.finish(records.PRUNED, objective=value, error=str(err))
        return value
    if isinstance(err, KeyboardInterrupt):
        # Recorded even if its files fail to write (a figure's import the interrupt broke).
        with contextlib.suppress(Exception):
            record.finish(records.INTERRUPTED, error="interrupted by the user")
        raise err
    if isinstance(err, Diverged):
        record.add_epoch(err.epoch)  # shown in the history; its checkpoint was never written
        record.finish(records.FAILED, error=str(err))
        raise RunFailed(f"{life.out}: {err}; the run is marked failed") from None
    record.finish(records.FAILED, error=f"{type(err).__name__}: {one_line(err)}")
    raise err


def _pruned(err: BaseException) -> bool:
    """Whether ``err`` is Optuna's TrialPruned: raised only by a trial's reporter, so only
    in a process that imported Optuna."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(err, optuna.TrialPruned)


def kept_failure(out: Path, error: str | None) -> RunFailed:
    """The error of a run that failed before and is kept so (see :func:`checkpoint.plan`)."""
    return RunFailed(
        f"{out} holds this run, failed ({error}); kept as it is: retry_failed=true continues "
        "it from its last checkpoint, resume=false starts it afresh"
    )


# What a run leaves besides metrics.json; a run started afresh removes an earlier attempt's.
_OUTPUT_FILES = (
    records.PREPROCESS_FILE,
    records.CHECKPOINT_FILE,
    records.MODEL_FILE,
    records.HISTORY_FILE,
    records.CURVES_FILE,
)


def _write_hydra_record(
    out: Path, cfg: DictConfig, hydra_cfg: DictConfig, full_cfg: DictConfig
) -> None:
    """Hydra's record of the job in ``.hydra/``, written here rather than by Hydra (whose
    ``hydra.output_subdir`` is null) so that a refused run leaves the folder untouched."""
    folder = out / records.HYDRA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", full_cfg),
        ("overrides.yaml", hydra_cfg.overrides.task),
    ):
        records.write_yaml(folder / name, node)


class RunRecord:
    """metrics.json of one run, kept in memory and rewritten atomically as the run goes."""

    def __init__(
        self,
        out: Path,
        cfg: DictConfig,
        hydra_cfg: DictConfig,
        device: torch.device,
        started: float,
        stacked: dict[str, Any] | None = None,
    ) -> None:
        self.out = out
        self.started = started
        self.earlier = 0.0  # the wall time of the sessions this run continues
        self.ended = False  # metrics.json holds how the run ended (:meth:`finish`)
        self.loggers: loggers.Loggers | None = None  # set once the run's trial is known
        # A sweep's run is named by its folder below the sweep's (curves.png's title), both
        # normalised (``..`` resolved) as Hydra makes the run's own.
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        self.sweep_dir = Path(os.path.abspath(str(hydra_cfg.sweep.dir))) if multirun else None
        self.data: dict[str, Any] = {
            "schema_version": records.SCHEMA_VERSION,
            "status": records.RUNNING,
            "error": None,
            "objective": objectives.entry(cfg.objective),
            "params": params_of(cfg, override_keys(hydra_cfg.overrides.task)),
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
        if stacked is not None:  # which group the run trains in
            self.data["stacked"] = stacked

    def save(self) -> None:
        self._clock()
        records.write_json(self.out / records.METRICS_FILE, self.data)

    def resume(self, earlier: dict[str, Any]) -> None:
        """Carry over the epochs, training time and wall time of the run this one continues."""
        self.data["history"] = earlier["history"]
        self.data["epochs_run"] = earlier["epochs_run"]
        self.data["seconds"]["train"] = earlier["seconds"]["train"]
        self.earlier = earlier["seconds"]["total"]
        self.data["started_at"] = earlier["started_at"]
        self.save()

    def add_epoch(self, epoch: dict[str, float]) -> None:
        """Record an epoch in memory; :meth:`save` writes it."""
        self.data["history"].append(epoch)
        self.data["epochs_run"] = epoch["epoch"]
        self.data["seconds"]["train"] += epoch["seconds"]
        self._clock()  # the checkpoint's record, written before metrics.json, is up to date

    def _clock(self) -> None:
        """``seconds.total``: this session's wall time so far, and the earlier sessions'."""
        self.data["seconds"]["total"] = self.earlier + time.perf_counter() - self.started

    def finish(
        self,
        status: str,
        objective: float | None = None,
        final: dict[str, float] | None = None,
        error: str | None = None,
    ) -> None:
        """Write history.csv and curves.png, then the final metrics.json; then tell the
        loggers (TensorBoard, MLflow) how the run ended."""
        self.data.update(status=status, error=error, finished_at=_now(), final=final or {})
        self.data["objective"]["value"] = objective
        try:
            if self.data["history"]:
                records.write_csv(
                    self.out / records.HISTORY_FILE, self.data["history"], records.EPOCH_FIELDS
                )
                title = drawing.title(self.out, self.data["overrides"], self.sweep_dir)
                # MLflow keeps curves.png with the run, so it must be there when it ends.
                now = self.loggers is not None and self.loggers.keeps_files
                drawing.curves(self.data["history"], self.out / records.CURVES_FILE, title, now)
        except BaseException:
            if status != records.COMPLETE:  # a failure or an interrupt is recorded still;
                self.save()  # a run without its files is not complete (job.complete)
            raise
        with interrupts.deferred():  # a Ctrl-C between the two would mark it interrupted
            self.save()
            self.ended = True
        if self.loggers is not None:
            self.loggers.finish(self.data)


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


@functools.cache
def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("mlp-sweep", *_VERSIONS):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found
