"""The files a run and a sweep leave on disk: their names, the metric names, and safe writes.

Everything that reads or writes a run folder imports its names from here, so the layout
documented in the README is defined once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

# Files inside one run folder (a Hydra job folder).
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
PREPROCESS_FILE = "preprocess.json"  # a table's features, encoding, scaling and classes
HYDRA_DIR = ".hydra"  # config.yaml, hydra.yaml, overrides.yaml: Hydra's record of the job

# Files a sweep folder gets once its runs are collected.
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
SUMMARY_PNG = "summary.png"
# Optuna's own figures, beside the summary of a search.
STUDY_PLOTS = (
    "optuna_history.png",
    "optuna_importances.png",
    "optuna_parallel.png",
    "optuna_slice.png",
)
PARETO_PLOT = "optuna_pareto.png"  # a search with several objectives: its Pareto front
# Held (flock) by the grid sweep running in a sweep folder; it holds that process's pid.
SWEEP_LOCK = ".mlp_sweep.lock"

# Metric names, each with the direction in which it improves.
METRICS: dict[str, str] = {
    "train_loss": "minimize",
    "train_acc": "maximize",
    "val_loss": "minimize",
    "val_acc": "maximize",
    "test_loss": "minimize",
    "test_acc": "maximize",
}
# The test set is reported, never used to choose settings.
OBJECTIVES = tuple(name for name in METRICS if not name.startswith("test_"))
# What a run costs, also metrics: a search with several objectives trades accuracy against
# them. ``n_params`` is in metrics.json's ``final``, ``seconds`` is its ``seconds.train``.
COSTS: dict[str, str] = {"n_params": "minimize", "seconds": "minimize"}
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")

# Run states, as written in metrics.json["status"].
RUNNING = "running"
COMPLETE = "complete"
INTERRUPTED = "interrupted"
FAILED = "failed"
PRUNED = "pruned"
STATUSES = (RUNNING, COMPLETE, INTERRUPTED, FAILED, PRUNED)
DONE = (COMPLETE, PRUNED, FAILED)  # a run that needs no more training (interrupted does)


UMASK = os.umask(0)  # the process umask, which results follow (read by setting it back)
os.umask(UMASK)


def runs(n: int) -> str:
    """``1 run``, ``3 runs``: how a summary counts its runs."""
    return f"{n} run" if n == 1 else f"{n} runs"


def direction(metric: str) -> str:
    """Return ``"maximize"`` or ``"minimize"`` for a metric name.

    >>> direction("val_acc")
    'maximize'
    """
    try:
        return {**METRICS, **COSTS}[metric]
    except KeyError:
        allowed = ", ".join([*METRICS, *COSTS])
        raise ValueError(f"unknown metric {metric!r}; allowed: {allowed}") from None


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place.

    A crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes files private; results are not
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as err:  # name the file the user knows, not the temporary one
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented, strict JSON (NaN and infinities become null), atomically."""
    text = json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_csv(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    """``rows`` as a CSV table with the columns ``fields``, atomically; a missing value, None
    or NaN, is an empty cell (as pandas writes them).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "history.csv"
    >>> rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": math.nan}]
    >>> write_csv(path, rows, ("epoch", "loss"))
    >>> print(path.read_text(), end="")
    epoch,loss
    1,0.5
    2,
    """

    def cell(value: Any) -> Any:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(fields)
            out.writerows([cell(row.get(key)) for key in fields] for row in rows)

    atomic_write(path, write)


def write_yaml(path: Path, node: Any) -> None:
    """An OmegaConf node as YAML, unresolved (as Hydra writes it), atomically."""
    from omegaconf import OmegaConf  # here: `mlp-sweep collect` never needs it

    text = OmegaConf.to_yaml(node)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_torch(path: Path, obj: Any) -> None:
    """``torch.save`` atomically. Serialised in memory first: torch's own file writer turns a
    full disk into an obscure RuntimeError, Python's write into a plain OSError."""
    import torch  # here: commands that train nothing never import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """Read a run's metrics.json; raise ``ValueError`` naming the file if it is unusable."""
    path = Path(run_dir) / METRICS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: {err}") from None
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        raise ValueError(f"{path}: not an mlp_sweep metrics file")
    if type(data.get("schema_version")) is not int or data["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema_version {data.get('schema_version')!r} is not one this version "
            f"of mlp_sweep reads ({SCHEMA_VERSION})"
        )
    for key, kind in _SCHEMA.items():
        if not isinstance(data.get(key), kind):
            raise ValueError(f"{path}: {key!r} is missing or not {_KIND_NAMES[kind]}")
    if not all(isinstance(epoch, dict) for epoch in data["history"]):
        raise ValueError(f"{path}: 'history' holds something other than epoch records")
    metric = data["objective"].get("metric")
    names = metric if isinstance(metric, list) and metric else [metric]
    if not all(isinstance(name, str) and name in {**METRICS, **COSTS} for name in names):
        allowed = ", ".join([*METRICS, *COSTS])
        raise ValueError(f"{path}: objective metric {metric!r} is not among {allowed}")
    if not isinstance(data.get("error"), (str, type(None))):
        raise ValueError(f"{path}: 'error' is not text or null")
    return data


# The keys every reader relies on, with their JSON types (bool is an int in Python: excluded
# where it matters by the readers' own checks).
_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "objective": dict,
    "params": dict,
    "final": dict,
    "history": list,
    "epochs_run": int,
    "seconds": dict,
    "config": dict,
}
_KIND_NAMES = {dict: "an object", list: "a list", int: "a whole number"}
