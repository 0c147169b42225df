"""The Hydra application behind run.py, and how its errors reach the user."""

from __future__ import annotations

import gc
import inspect
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import NoReturn

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

from mlp_sweep import interrupts, records
from mlp_sweep.config import NO_SEARCH, check_folder, is_search, resolver_said
from mlp_sweep.errors import (
    BAD_INPUT,
    INTERRUPTED,
    BadInput,
    ConfigError,
    RunFailed,
    SweepFailed,
    one_line,
)

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# What configs may build with `_target_` here: this project's callbacks. Optimizers, samplers
# and pruners are allowed where they are built (job.OPTIMIZERS, study.TRUSTED).
TRUSTED_TARGETS = ("mlp_sweep.*",)
# Hydra's flags that choose what to do; with one of them present, a search is not started.
_MODE_FLAGS = {"-m", "--multirun", "-r", "--run", "-c", "--cfg", "-i", "--info", "-h", "--help"}
_MODE_FLAGS |= {"--hydra-help", "-sc", "--shell-completion"}


@hydra.main(config_path=CONFIG_DIR, config_name="config", execution_whitelist=TRUSTED_TARGETS)
def _hydra_main(cfg: DictConfig) -> float:
    global _run_dir
    if HydraConfig.get().mode == RunMode.RUN:
        _run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if _run_dir is not None:
            check_folder("run")  # the folder Hydra just made is removed if so
        from mlp_sweep import job  # here: --help and --cfg never import torch

        return job.run(cfg)
    # A value that resolves only as the job runs (${oc.env:X}, ${hydra:...}) may fail there.
    except (BadInput, RunFailed, KeyboardInterrupt, InterpolationResolutionError) as err:
        if _run_dir is not None:  # in a sweep the sweeper records it
            _remove_if_empty(_run_dir)  # made by Hydra for a run that never started
            if interrupts.pressed():  # what failed after Ctrl-C failed because of it
                raise KeyboardInterrupt from None
            if isinstance(err, InterpolationResolutionError):
                _bad_input(err)
            if not isinstance(err, KeyboardInterrupt):
                _fail(err)
        raise


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it is empty, and the empty folders above it below the working
    directory (``outputs/runs`` of ``outputs/runs/<time>``: Hydra made them for this run)."""
    cwd = Path.cwd()
    for each in (folder, *folder.parents):
        if not each.is_dir() or any(each.iterdir()) or (each != folder and cwd not in each.parents):
            break
        each.rmdir()
    if not folder.is_dir():  # its log file, which logging would open (and fail to) later
        for handler in list(logging.getLogger().handlers):
            if (
                isinstance(handler, logging.FileHandler)
                and Path(handler.baseFilename).parent == folder
            ):
                logging.getLogger().removeHandler(handler)
                handler.close()


def run() -> None:
    """:func:`main` in a process that ends when it returns: ``python run.py``."""
    try:
        main()
    finally:
        _ending()


def _ending() -> None:
    """Let the process end without collecting its objects: as it shuts down, Python scans
    every object torch and its compiler stack made, which took longer than `import torch`
    itself takes to print its version (0.9 s of every training command, 0.5 s after only
    `import torch`); frozen, they are left to the operating system."""
    gc.freeze()


def main() -> None:
    """Run Hydra; report bad input as one line and exit 2, an interrupt with exit 130."""
    # Hydra then raises errors to us instead of printing them itself, so bad input can be
    # reported as one line; anything unexpected still shows its full traceback.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    # A search is always a multirun. Hydra 1.4 takes hydra.mode only from the command line or
    # the primary config, so an hparams_search config cannot set it: it is said here instead.
    sys.argv[1:] = [a for a in sys.argv[1:] if a not in NO_SEARCH]
    args = sys.argv[1:]
    if is_search(args) and not _MODE_FLAGS & set(args):
        sys.argv.insert(1, "--multirun")
    global _run_dir, _started
    _run_dir, _started = None, time.time()
    interrupts.catch()
    try:
        try:
            _hydra_main()
        except Exception:
            if interrupts.pressed():  # what failed after Ctrl-C failed because of it
                raise KeyboardInterrupt from None
            raise
        interrupts.check()  # one lost on its way (see mlp_sweep.interrupts) ends it all the same
    except KeyboardInterrupt:
        print(f"interrupted; {_kept()}", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except (
        BadInput,
        ConfigCompositionException,
        OmegaConfBaseException,
        OverrideParseException,
        yaml.YAMLError,  # a config file that is not YAML
    ) as err:
        _bad_input(err)
    except InstantiationException as err:  # a plugin's constructor refused its settings
        if isinstance(err.__cause__, BadInput):
            _bad_input(err.__cause__)
        if "execution whitelist" in str(err):  # a `_target_` this app does not trust
            _bad_input(err)
        raise
    except ValueError as err:  # Hydra's own check of its flags (-m with --cfg, say)
        if str(err).startswith("Only one of --run"):
            _bad_input(err)
        raise
    except TypeError as err:  # a plugin's constructor given a setting it does not take
        if unknown := _unknown_setting(err):
            _bad_input(unknown)
        raise
    except (RunFailed, SweepFailed) as err:  # a run diverged, or a sweep's runs failed
        _fail(err)
    except OSError as err:  # an output folder that cannot be written: read-only, or full
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: cannot write the results: {where}{err.strerror or err}", file=sys.stderr)
        sys.exit(1)


def _unknown_setting(err: TypeError) -> ConfigError | None:
    """A plugin (launcher, sweeper) given a setting its constructor does not take, as one
    line naming the key and the settings it takes; None for any other TypeError."""
    said = "\n".join([str(err), *getattr(err, "__notes__", [])])  # Hydra notes the key
    found = re.search(
        r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'\s+full_key: (\S+)",
        said,
    )
    if not found:
        return None
    name, key, node = found.groups()
    plugins = Plugins.instance()
    found_cls = [p for k in (Launcher, Sweeper) for p in plugins.discover(k) if p.__name__ == name]
    if len(found_cls) != 1:
        return None
    cls = found_cls[0]
    takes = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return ConfigError(
        f"{node}.{key} is invalid: {name} takes no such setting; allowed: "
        f"{', '.join(takes) or 'none'}"
    )


def _kept() -> str:
    """What an interrupted command kept, in words, as its folders show it."""
    from mlp_sweep import callbacks  # a sweep has imported it; a single run has not

    if _run_dir is not None:  # a single run
        _remove_if_empty(_run_dir)  # stopped before _hydra_main could
        if not _run_dir.is_dir():
            return "the run had not started; nothing was written"
        shown = _shown(_run_dir)
        return f"the run is kept in {shown} as it stopped; hydra.run.dir={shown} continues it"
    swept = callbacks.swept
    # At any depth: hydra.sweep.subdir may nest a sweep's runs.
    if swept is None or not any(swept.rglob(records.METRICS_FILE)):
        return "no run had started"
    summary = swept / records.SUMMARY_MD
    if summary.exists() and summary.stat().st_mtime >= _started:
        if not any(_finished(m) for m in swept.rglob(records.METRICS_FILE)):
            return (
                "no run had finished; the runs are kept as they stopped, and the summary lists them"
            )
        return "finished runs and the summary are kept"
    return f"the runs are kept as they ended; `mlp-sweep collect {_shown(swept)}` summarises them"


def _finished(metrics: Path) -> bool:
    """Whether the run of ``metrics`` (a metrics.json) ended, however it ended, but stopped."""
    try:
        return records.read_metrics(metrics.parent)["status"] not in (
            records.RUNNING,
            records.INTERRUPTED,
        )
    except ValueError:
        return False


def _shown(folder: Path) -> str:
    """``folder`` as the user would type it: relative to the working directory if inside."""
    return str(folder.relative_to(Path.cwd())) if folder.is_relative_to(Path.cwd()) else str(folder)


# The folder of the single run this process runs (None in a sweep), and when it started.
_run_dir: Path | None = None
_started = 0.0


def _bad_input(err: BaseException) -> NoReturn:
    print(f"error: {describe(err)}", file=sys.stderr)
    sys.exit(BAD_INPUT)


def _fail(err: BadInput | RunFailed | SweepFailed) -> NoReturn:
    if isinstance(err, BadInput):
        _bad_input(err)
    print(f"error: {one_line(err)}", file=sys.stderr)
    sys.exit(1)


def describe(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut to the line a user needs.

    >>> describe(MissingConfigException("...", "model/foo", ["sigmoid_mse", "softmax_ce"]))
    'model=foo is invalid: allowed: sigmoid_mse, softmax_ce'
    """
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        context = f" ({err.context} on line {err.context_mark.line + 1})" if err.context else ""
        return f"{mark.name}, line {mark.line + 1}: {err.problem}{context}"
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        return _missing_option(err)
    if isinstance(err, InstantiationException):  # its lines are one sentence, then the key
        lines = str(err).strip().splitlines()
        key = [line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")]
        said = " ".join(line.strip() for line in lines if not line.startswith("full_key:"))
        return f"{key[0]}: {said}" if key else said
    lines = [line.strip() for line in str(err).strip().splitlines()]
    first = lines[0] if lines else one_line(err)
    if first.endswith(":") and len(lines) > 1:  # "ConfigKeyError raised while composing
        first = f"{first} {lines[1]}"  # config:", with the reason on the next line
    cause = err.__cause__
    if isinstance(err, InterpolationResolutionError) and err.full_key:  # what the resolver said
        return f"{err.full_key} is invalid: {resolver_said(err)}"
    if isinstance(cause, OmegaConfBaseException):
        return f"{first.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    return first


def _missing_option(err: MissingConfigException) -> str:
    """``group=name is invalid: allowed: ...``, after the file and line that name it when a
    config file does (Hydra says only which config it was composing)."""
    group, _, name = err.missing_cfg_file.rpartition("/")
    dirs = [Path(p) for p in re.findall(r"path=file://(\S+)", str(err))] or [Path(CONFIG_DIR)]
    options = err.options or _options(dirs, group)
    said = f"{group.replace('/', '.')}={name} is invalid"
    if options:
        said += f": allowed: {', '.join(options)}"
    # The config Hydra was composing, then the options chosen on the command line (an
    # `override` in experiment/x.yaml is reported as a problem of the config it overrides).
    named = re.match(r"In '([^']+)'", str(err))
    configs = [named.group(1)] if named else []
    configs += [
        arg.replace("=", "/", 1) for arg in sys.argv[1:] if re.fullmatch(r"[\w/]+=\w+", arg)
    ]
    files = [d / f"{c}.yaml" for c in configs for d in dirs]
    where = _line_naming([f for f in files if f.is_file()], group.rpartition("/")[2], name)
    return f"{where}: {said}" if where else said


def _options(dirs: list[Path], group: str) -> list[str]:
    return sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml")})


def _line_naming(files: list[Path], group: str, name: str) -> str | None:
    """``file, line N`` of the first defaults-list entry that picks option ``name`` of
    ``group`` (``- group: name``, ``- override /group: name``, ``- group: [a, name]``)."""
    entry = re.compile(
        rf"^\s*-\s*(override\s+)?/?([\w/]*/)?{re.escape(group)}\s*:\s*"
        rf"(\[.*\b{re.escape(name)}\b.*\]|{re.escape(name)})\s*(#.*)?$"
    )
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if entry.match(line):
                return f"{path}, line {number}"
    return None
