"""An Optuna study as the runs of a search see it: its storage, the user attributes runs and
the sweeper leave on a trial, and the per-epoch reporting that lets a pruner stop a run."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna.storages import RDBStorage

# User attributes that jobs and the sweeper leave on a trial, through the study's storage.
RUN_DIR = "run_dir"  # the trial's job folder
PRUNED_AT = "pruned_at"  # the epoch after which the job stopped on the pruner's word
ERROR = "error"  # why the trial failed; only trials that ran to an end get one
# What sampler and pruner configs may build with `_target_` (Hydra's execution whitelist).
TRUSTED = {
    "sampler": ("optuna.samplers.*", "hydra_plugins.hydra_optuna_sweeper.*"),
    "pruner": ("optuna.pruners.*",),
}
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb")


def throwaway(**settings: Any) -> optuna.Study:
    """A study in memory for a check (a space's draws, a pruner's first decision), made
    without Optuna's "A new study created in memory" line, which would name no study of the
    user's."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(**settings)
    finally:
        optuna.logging.set_verbosity(verbosity)


def is_rdb(url: Any) -> bool:
    """Whether ``url`` names a SQL database, which Optuna opens as an ``RDBStorage``.

    >>> is_rdb("sqlite:///outputs/optuna/s.db"), is_rdb("postgresql+psycopg://h/db"), is_rdb(None)
    (True, True, False)
    """
    return scheme(url) in RDB_SCHEMES


def scheme(url: Any) -> str | None:
    """A URL's scheme without its driver: ``sqlite`` of ``sqlite+pysqlite:///s.db``."""
    return url.split(":")[0].split("+")[0] if isinstance(url, str) else None


def opens_elsewhere(url: Any) -> bool:
    """Whether another process can open the storage ``url``: a SQL database on a server or in
    a file, not in this process's memory.

    >>> [opens_elsewhere(url) for url in ("sqlite:///s.db", "postgresql://h/db")]
    [True, True]
    >>> [opens_elsewhere(url) for url in ("sqlite:///:memory:", "sqlite://", None)]
    [False, False, False]
    >>> opens_elsewhere("sqlite:///file:m?mode=memory&uri=true")
    False
    """
    if scheme(url) != "sqlite":
        return is_rdb(url)
    return sqlite_file(url) is not None


def sqlite_file(url: Any) -> Path | None:
    """The database file of a SQLite storage; None for any other storage, and for a SQLite
    database in memory.

    >>> sqlite_file("sqlite:///outputs/optuna/s.db"), sqlite_file("postgresql://h/db")
    (PosixPath('outputs/optuna/s.db'), None)
    >>> sqlite_file("sqlite:////tmp/50%25%3F/s.db?timeout=5")
    PosixPath('/tmp/50%?/s.db')
    >>> sqlite_file("sqlite+pysqlite:///s.db"), sqlite_file("sqlite:///file:s.db?uri=true")
    (PosixPath('s.db'), PosixPath('s.db'))
    """
    if scheme(url) != "sqlite":
        return None
    from sqlalchemy.engine import make_url  # as the storage reads it: %-escapes, ?query

    parsed = make_url(url)
    database = parsed.database or ""
    if str(parsed.query.get("uri", "")).lower() in ("true", "1", "yes", "on"):  # file:<path>
        if parsed.query.get("mode") == "memory":
            return None
        database = database.removeprefix("file:")
    return None if database in ("", ":memory:") else Path(database)


def open_rdb(url: str, **heartbeat: Any) -> RDBStorage:
    """An Optuna RDB storage; SQLite waits for locks instead of failing at once, and its
    folder is created."""
    engine_kwargs: dict[str, Any] = {}
    if (path := sqlite_file(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)


def trial_reporter(
    trial_number: int, sweeper: DictConfig, objective: str, run_dir: Path, last_epoch: int
) -> Any:
    """The per-epoch hook of a job that runs trial ``trial_number``: it reports the objective
    to the study and raises ``optuna.TrialPruned`` when the pruner says stop, before
    ``last_epoch`` (stopping after the last epoch would save nothing)."""
    if sweeper.get("storage") is None:  # in memory, out of the job's reach: the sweeper warns
        return None
    storage = _reporting_storage(sweeper.storage)
    pruner = instantiate(sweeper.pruner, _execution_whitelist_=TRUSTED["pruner"])
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial_number
    )
    trial = optuna.trial.Trial(study, trial_id)
    trial.set_user_attr(RUN_DIR, str(run_dir))
    if not isinstance(objective, str):  # several objectives: Optuna cannot prune those
        return None

    def report(epoch: dict[str, float]) -> None:
        value = epoch[objective]
        if math.isfinite(value):
            trial.report(value, epoch["epoch"])
        if epoch["epoch"] < last_epoch and trial.should_prune():
            trial.set_user_attr(PRUNED_AT, epoch["epoch"])
            raise optuna.TrialPruned(f"pruned after epoch {epoch['epoch']}")

    return report


# The storage the last trial of this process reported to, and what it was opened for.
_kept: tuple[tuple[Any, ...], Any] | None = None


def _reporting_storage(url: str) -> Any:
    """The study's storage, for a job to report its trial to. Opening one (an engine, and a
    check of the database's schema) takes about as long as a short run's epoch, so it is
    kept for the process's next trial of the same study (a stacked group's members, a worker's
    next trial); a SQLite file replaced since, or another working folder, opens it anew."""
    global _kept
    if _kept is not None and _kept[0] == _opened_for(url):
        return _kept[1]
    if _kept is not None and isinstance(_kept[1], RDBStorage):
        _kept[1].engine.dispose()  # its connections: a long-lived process opens many studies
    storage = open_rdb(url) if is_rdb(url) else optuna.storages.get_storage(url)
    _kept = (_opened_for(url), storage)
    return storage


def _opened_for(url: str) -> tuple[Any, ...]:
    """What a storage opened from ``url`` reaches: the URL, from this folder (a relative
    SQLite path), and the SQLite file itself (None while there is none)."""
    path = sqlite_file(url)
    try:
        stat = None if path is None else path.stat()
    except OSError:
        stat = None
    return (url, os.getcwd(), None if stat is None else (stat.st_dev, stat.st_ino))
