"""Collect run folders into one table, rank them, and write a sweep's summary files.

Works on anything that holds run folders: a sweep folder, several sweeps, one run, or a sweep
that was interrupted. A run whose metrics.json is missing or unreadable is listed as
``incomplete`` with a warning that names its folder; collection itself never fails on it.
Runs with several objectives get a ``pareto`` column: True for each complete run that no other
beats on every objective at once.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlp_sweep import objectives, records

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

INCOMPLETE = "incomplete"  # a run folder without a usable metrics.json
VARIANT = "model.name"  # the output/loss variant: losses of different variants never compare
# Config keys that never tell runs apart in a useful way.
_NOT_PARAMS = {"data.cache_dir", "save_model", "tags", "trial", "console"}
_NOT_PARAM_GROUPS = ("logger.",)  # where a run reports, not what it trains
_FIXED_COLUMNS = (
    "sweep",
    "run",
    "status",
    "epochs_run",
    "seconds",
    *records.METRICS,
    "n_params",
    "error",
    "path",
)


@dataclass
class Collection:
    """The runs found under some folders: one row each, plus every run's epoch history."""

    runs: pd.DataFrame  # indexed by run label; the columns _FIXED_COLUMNS, then params
    histories: dict[str, pd.DataFrame]
    params: list[str]  # parameters whose values differ between the runs
    metric: str  # the metric the runs are ranked by
    objectives: list[str] = field(default_factory=list)  # the runs' objective metrics

    @property
    def direction(self) -> str:
        return records.direction(self.metric)


def collect(
    folders: Sequence[Path], metric: str | Sequence[str] | None = None, histories: bool = True
) -> Collection:
    """Find every run folder under ``folders`` and read it; with ``histories``, each run's
    epochs too (for figures: the tables need only each run's last).

    The runs are ranked by ``metric``, by default their objective (the first of several);
    a list of metrics is taken as the runs' objectives.

    >>> c = collect([Path("outputs/sweeps/does-not-exist")])
    >>> len(c.runs)
    0
    """
    rows: list[dict[str, Any]] = []
    epochs: dict[str, pd.DataFrame] = {}
    sweep_names = _sweep_names(folders)
    for folder, sweep in zip(folders, sweep_names):
        top = Path(folder).resolve()
        for run_dir in run_dirs(top):
            name = run_dir.relative_to(top).as_posix() if run_dir != top else run_dir.name
            label = name if len(folders) == 1 else f"{sweep}/{name}"
            row, history = _read_run(run_dir, histories)
            rows.append({"sweep": sweep, "run": name, **row, "label": label})
            if history is not None and len(history):
                epochs[label] = history
    runs = pd.DataFrame(rows)
    extra = [col for col in runs.columns if col not in (*_FIXED_COLUMNS, "label")]
    for col in ("epochs_run", "n_params"):  # whole numbers, beside a run without one
        if any(isinstance(r.get(col), int) for r in rows):
            runs[col] = pd.Series([r.get(col) for r in rows], dtype=object)
    for col in extra:
        # As read: an integer stays one, and a setting of null (init_std=null, PyTorch's own
        # init) stays None, apart from NaN: a setting the run has not (momentum for Adam).
        if any(isinstance(r.get(col), int) or (col in r and r[col] is None) for r in rows):
            runs[col] = pd.Series([r.get(col, math.nan) for r in rows], dtype=object)
    runs = runs.reindex(columns=[*_FIXED_COLUMNS, *extra, "label"]).set_index("label", drop=False)
    if metric is None or isinstance(metric, str):  # the objective most runs have
        found = Counter(tuple(objectives.names(r["objective"])) for r in rows if r.get("objective"))
        chosen = list(found.most_common(1)[0][0]) if found else ["val_acc"]
    else:
        chosen = objectives.names(metric)
    if not isinstance(metric, str):  # not asked for: the (first) objective, if comparable
        metric = chosen[0]
        if _mixed_losses(runs, metric):
            comparable = metric.replace("_loss", "_acc")
            log.warning(
                "the runs' objective %s mixes the losses of %s, which are not comparable; "
                "ranked by %s instead",
                metric,
                " and ".join(_variants(runs)),
                comparable,
            )
            metric = comparable
    records.direction(metric)  # an unknown name fails here, with the allowed ones
    if _mixed_losses(runs, metric):
        raise ValueError(
            f"--metric {metric} would rank the losses of {' and '.join(_variants(runs))} "
            "against each other, and they are not comparable (an MSE of sigmoid outputs, a "
            f"cross-entropy); rank by {metric.replace('_loss', '_acc')}, or compare runs of "
            "one variant"
        )
    params = _varying(runs)
    if "depth" in params:  # layer widths read alike when some runs have one layer, some more
        runs["hidden"] = runs["hidden"].map(_as_list)
    if len(chosen) > 1 and len(runs):
        runs.insert(runs.columns.get_loc("status") + 1, "pareto", _pareto(runs, chosen))
    return Collection(runs=runs, histories=epochs, params=params, metric=metric, objectives=chosen)


def _variants(runs: pd.DataFrame) -> list[str]:
    """The loss variants (``model.name``) among the runs."""
    if VARIANT not in runs.columns:
        return []
    return sorted(str(v) for v in runs[VARIANT].dropna().unique())


def _mixed_losses(runs: pd.DataFrame, metric: str) -> bool:
    return metric.endswith("_loss") and len(_variants(runs)) > 1


def ranked(c: Collection, sort: str | None = None, top: int | None = None) -> pd.DataFrame:
    """The runs as a table, best first by ``sort`` (default: the collection's metric)."""
    key = sort or c.metric
    if key not in c.runs.columns:
        allowed = ", ".join([*records.METRICS, *c.params, "seconds", "epochs_run"])
        raise ValueError(f"--sort {key!r} is not a column; allowed: {allowed}")
    if top is not None and top < 1:
        raise ValueError(f"--top {top} is invalid: must be a whole number >= 1")
    # Metrics and costs best first; anything else (a parameter) from the smallest up.
    ascending = key not in records.METRICS or records.direction(key) == "minimize"
    table = c.runs.sort_values(
        key, ascending=ascending, na_position="last", kind="stable", key=_sortable
    )
    metrics = [m for m in records.METRICS if m != c.metric and table[m].notna().any()]
    costs = [m for m in c.objectives if m in records.COSTS]
    columns = ["run", *c.params, c.metric, *metrics, *costs, "epochs_run", "seconds", "status"]
    columns = list(dict.fromkeys(columns))  # `seconds` may be the metric or an objective too
    if "pareto" in table.columns:
        columns.insert(1, "pareto")
    if table["sweep"].nunique() > 1:
        columns.insert(0, "sweep")
    return table[columns].head(top).reset_index(drop=True)


def seed_groups(c: Collection) -> pd.DataFrame | None:
    """Runs that differ only in ``seed``, as mean ± std of each metric (None if no seeds vary)."""
    if "seed" not in c.params:
        return None
    keys = [p for p in c.params if p != "seed"]
    if c.runs["sweep"].nunique() > 1:
        keys.insert(0, "sweep")
    done = _nulls_named(c.runs[c.runs["status"] == records.COMPLETE], keys)
    metrics = [m for m in records.METRICS if done[m].notna().any()]
    if done.empty or not metrics:
        return None
    grouped = done.groupby(keys, dropna=False, sort=False) if keys else [((), done)]
    rows = []
    for key, group in grouped:
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["seeds"] = len(group)
        row.update({m: _mean_std(group[m]) for m in metrics})
        rows.append((group[c.metric].mean(), row))
    sign = -1 if c.direction == "maximize" else 1
    rows.sort(key=lambda r: (math.isnan(r[0]), sign * r[0] if not math.isnan(r[0]) else 0))
    return pd.DataFrame([row for _, row in rows])


def side_by_side(c: Collection) -> pd.DataFrame | None:
    """One row per setting swept within the sweeps, one column per sweep (None for one sweep)."""
    if c.runs["sweep"].nunique() < 2:
        return None
    within = [
        p
        for p in c.params
        if p != "seed" and c.runs.groupby("sweep")[p].nunique(dropna=False).max() > 1
    ]
    done = _nulls_named(c.runs[c.runs["status"] == records.COMPLETE], within)
    if done.empty:
        return None
    if not within:  # each sweep is one setting: one row of all its runs
        done, within = done.assign(setting="all runs"), ["setting"]
    table = done.groupby([*within, "sweep"], sort=True, dropna=False)[c.metric].agg(_mean_std)
    return table.unstack("sweep", fill_value="").reset_index()  # a sweep without the setting


def _nulls_named(runs: pd.DataFrame, params: Sequence[str]) -> pd.DataFrame:
    """``runs`` with a setting of null written ``null`` in ``params``: grouping takes None
    for NaN, a setting the run has not."""
    named = {p: runs[p].map(lambda v: "null" if v is None else v) for p in params}
    return runs.assign(**named) if named else runs


def best(c: Collection) -> pd.Series | None:
    """The best complete run by the collection's metric."""
    done = c.runs[(c.runs["status"] == records.COMPLETE) & c.runs[c.metric].notna()]
    if done.empty:
        return None
    idx = done[c.metric].idxmin() if c.direction == "minimize" else done[c.metric].idxmax()
    return done.loc[idx]


def to_markdown(c: Collection, title: str, sort: str | None = None, top: int | None = None) -> str:
    """A readable report: counts by status, the ranked table, seed groups, best run, errors."""
    counts = ", ".join(f"{n} {s}" for s, n in Counter(c.runs["status"]).most_common())
    lines = [
        f"# {title}",
        "",
        f"{records.runs(len(c.runs))} ({counts or 'none'}), ranked by {c.metric} ({c.direction}).",
        "",
    ]
    if "pareto" in c.runs.columns:
        front = ", ".join(c.runs.loc[c.runs["pareto"], "label"]) or "none"
        goals = ", ".join(f"{m} ({records.direction(m)})" for m in c.objectives)
        lines += [f"Pareto-optimal on {goals}: runs {front}.", ""]
    if len(c.runs):
        lines += [_markdown(ranked(c, sort, top), c.params), ""]
    wide = side_by_side(c)
    if wide is not None:
        lines += [f"## {c.metric} side by side", "", _markdown(wide, c.params), ""]
    groups = seed_groups(c)
    if groups is not None:
        section = "## Runs that differ only in seed (mean ± std)"
        lines += [section, "", _markdown(groups, c.params), ""]
    winner = best(c)
    if winner is not None:
        where = f"run {winner['label']} ({setting(winner, c.params)})"
        lines += [f"Best: {where}: {objectives.show(c.metric, winner[c.metric])}", ""]
    failed = c.runs[c.runs["error"].notna()]
    if len(failed):
        lines += ["## Errors", ""]
        lines += [f"- run {label}: {err}" for label, err in failed["error"].items()]
        lines.append("")
    return "\n".join(lines)


def setting(run: pd.Series, params: Sequence[str]) -> str:
    """A run's swept values as ``hidden=50, lr=0.1``, without those it has not (momentum for
    an Adam run)."""
    shown = [f"{p}={_short(run[p])}" for p in params if p != "trial" and not _absent(run[p])]
    return ", ".join(shown) or "one setting"


def _missing(value: Any) -> bool:
    return value is None or _absent(value)


def _absent(value: Any) -> bool:
    """A setting the run has not (NaN), unlike one it set to null (None)."""
    return isinstance(value, float) and math.isnan(value)


def _short(value: Any) -> Any:
    """A setting as a table or legend shows it: null, true and false as a config writes
    them, a float to 4 significant digits."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    return f"{value:.4g}" if isinstance(value, float) else value


def write_summary(
    sweep_dir: Path, metric: str | Sequence[str] | None = None, plot: bool = True
) -> tuple[Collection, str]:
    """Collect ``sweep_dir`` and (re)write its summary.csv, summary.md and (``plot``)
    summary.png; the collection, and the text of summary.md ("" if it holds no runs)."""
    sweep_dir = Path(sweep_dir)
    c = collect([sweep_dir], metric, histories=plot)
    text = write_tables(c, sweep_dir)
    if text and plot:
        write_plot(c, sweep_dir / records.SUMMARY_PNG)
    return c, text


def write_tables(c: Collection, sweep_dir: Path) -> str:
    """(Re)write summary.csv and summary.md of the sweep ``c`` collected, and return the
    text of summary.md; "" (with a warning, nothing written) if it holds no runs."""
    if c.runs.empty:
        log.warning("no runs found under %s; nothing to summarise", sweep_dir)
        return ""
    table = summary_table(c)
    records.atomic_write(
        sweep_dir / records.SUMMARY_CSV, lambda tmp: table.to_csv(tmp, index=False)
    )
    text = to_markdown(c, f"Sweep {sweep_dir}")
    records.atomic_write(sweep_dir / records.SUMMARY_MD, lambda tmp: tmp.write_text(text))
    return text


def summary_table(c: Collection) -> pd.DataFrame:
    """The table of summary.csv: one row per run, the fixed columns, then the parameters
    that differ between the runs."""
    columns = [col for col in (*_FIXED_COLUMNS, *c.params) if col in c.runs.columns]
    if "pareto" in c.runs.columns:
        columns.insert(columns.index("status") + 1, "pareto")
    return c.runs[columns].reset_index(drop=True)


def write_plot(c: Collection, path: Path) -> None:
    """summary.png for a collection, if any run has a history."""
    from mlp_sweep import plots  # matplotlib: only where a figure is drawn

    figure = summary_figure(c)
    if figure is not None:
        plots.save(figure, path)


def summary_figure(c: Collection) -> Figure | None:
    """The figure of summary.png (None if no run has finished an epoch)."""
    from mlp_sweep import plots

    if not c.histories:
        return None
    runs = c.runs.assign(legend=[f"{i}: {setting(r, c.params)}" for i, r in c.runs.iterrows()])
    return plots.summary_figure(runs, c.histories, c.params, c.metric)


def run_dirs(folder: Path) -> list[Path]:
    """Folders holding a metrics.json, or a Hydra job that never wrote one."""
    found = {p.parent for p in folder.rglob(records.METRICS_FILE)}
    found |= {p.parent.parent for p in folder.rglob(".hydra/overrides.yaml")}
    if (folder / "multirun.yaml").is_file() or folder.name == ".hydra":
        found.discard(folder)  # the sweep folder itself is not a run
    return sorted(found, key=_natural)


def _read_run(run_dir: Path, history: bool = True) -> tuple[dict[str, Any], pd.DataFrame | None]:
    try:
        m = records.read_metrics(run_dir)
    except ValueError as err:
        log.warning("run %s is incomplete: %s", run_dir, err)
        return {"status": INCOMPLETE, "error": str(err), "path": str(run_dir)}, None
    params = {
        k: _cell(v)
        for k, v in m["params"].items()
        if k not in _NOT_PARAMS and not k.startswith(_NOT_PARAM_GROUPS)
    }
    if isinstance(m["params"].get("hidden"), list):
        params["depth"] = len(m["params"]["hidden"])
    choices = m.get("choices")
    if isinstance(choices, dict):
        params.update({k: _cell(v) for k, v in choices.items() if v is not None})
    last = m["history"][-1] if m["history"] and isinstance(m["history"][-1], dict) else {}
    # A run that did not finish is shown with its last epoch's figures.
    figures = {k: m["final"].get(k, last.get(k)) for k in records.METRICS}
    row = {
        **params,
        "status": m["status"],
        "epochs_run": m["epochs_run"],
        "seconds": _number(m["seconds"].get("train")),  # the `seconds` metric: training time
        "error": m.get("error"),
        "path": str(run_dir),
        "objective": m["objective"]["metric"],
        **{k: _number(v) for k, v in figures.items()},
        "n_params": _count(m["final"].get("n_params")),
    }
    trial = m.get("trial")
    if isinstance(trial, dict) and isinstance(trial.get("number"), int):
        row["trial"] = trial["number"]
    if not history:
        return row, None
    return row, pd.DataFrame(m["history"], columns=records.EPOCH_FIELDS).apply(
        pd.to_numeric, errors="coerce"
    )


def _count(value: Any) -> int | float:
    """A whole number as it is; NaN for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) else math.nan


def _number(value: Any) -> float:
    """A metric as a float; NaN for null, text or anything else that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _varying(runs: pd.DataFrame) -> list[str]:
    """Parameter columns whose values differ between runs, minus those a varying config
    group already determines (``optimizer.momentum`` when ``optimizer`` varies)."""
    fixed = {*_FIXED_COLUMNS, "label", "objective", "trial"}
    candidates = [c for c in runs.columns if c not in fixed]
    read = runs[runs["status"] != INCOMPLETE]  # a run without a record has no settings
    varying = [c for c in candidates if read[c].map(_key).nunique() > 1]  # NaN counts too
    groups = [c for c in varying if "." not in c]
    keep = []
    for col in varying:
        group = col.split(".", 1)[0]
        if "." in col and group in groups and _determined_by(runs, group, col):
            continue
        keep.append(col)
    trial = ["trial"] if "trial" in runs.columns else []  # Optuna's trial number, first
    return trial + sorted(keep, key=lambda c: ("." in c, c))


def _key(value: Any) -> str:
    """A cell as text: null apart from a value the run has not."""
    return "null" if value is None else "nan" if _absent(value) else str(value)


def _pareto(runs: pd.DataFrame, names: list[str]) -> list[bool]:
    """Whether each run is on the Pareto front of the complete runs (False for the rest)."""
    done = runs["status"] == records.COMPLETE
    points = runs[names].apply(pd.to_numeric, errors="coerce").where(done, math.nan)
    return objectives.pareto_optimal(points.to_numpy(), objectives.directions(names))


def _as_list(hidden: Any) -> Any:
    """One layer's width as a list, ``[100]``, beside runs of several layers."""
    if isinstance(hidden, (int, float)) and math.isfinite(hidden):
        return f"[{int(hidden)}]"
    return hidden


def _determined_by(runs: pd.DataFrame, group: str, col: str) -> bool:
    return bool((runs.astype({col: str}).groupby(group)[col].nunique() <= 1).all())


def _cell(value: Any) -> Any:
    """Lists become one value (``[100]`` -> 100) or a readable string, so cells compare;
    anything else that is not a plain value becomes its text."""
    if isinstance(value, list):
        return _cell(value[0]) if len(value) == 1 else str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _sortable(column: pd.Series) -> pd.Series:
    """A column that sorts whatever it mixes: numbers, lists of layer widths written as text
    (``[100, 50]``, after ``50``), names. Missing values stay missing, to go last."""
    if pd.api.types.is_numeric_dtype(column):
        return column
    return column.map(_sort_value)


def _sort_value(value: Any) -> tuple[int, tuple[Any, ...]] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        return (0, (float(value),))
    text = str(value)
    parts = text.strip("[]").split(",")
    try:
        return (0, tuple(float(p) for p in parts))
    except ValueError:
        return (1, (text,))


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if len(values) < 2:
        return f"{values.mean():.4f}" if len(values) else "nan"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def _markdown(table: pd.DataFrame, params: Sequence[str]) -> str:
    """``table`` in Markdown; its settings as a person reads them: null where a run set null,
    a blank cell where it has none, true and false."""
    shown = table.copy()
    for col in set(params) & set(shown.columns):
        cells = [("null" if v is None else None) if _missing(v) else _short(v) for v in shown[col]]
        shown[col] = pd.Series(cells, index=shown.index, dtype=object)
    if "pareto" in shown.columns:  # a flag, as the settings' flags are written
        shown["pareto"] = [_short(bool(v)) for v in shown["pareto"]]
    # Counts whole, whatever the NaN of a run without one makes of their column.
    formats = [".0f" if col in _COUNTS else ".4g" for col in shown.columns]
    return shown.to_markdown(index=False, floatfmt=formats)


_COUNTS = ("n_params", "epochs_run")


def _sweep_names(folders: Sequence[Path]) -> list[str]:
    names = [Path(f).resolve().name for f in folders]
    if len(set(names)) < len(names):
        names = [str(f) for f in folders]
    return names


def _natural(path: Path) -> tuple[tuple[int, Any], ...]:
    """Sort key putting ``sweep/2`` before ``sweep/10``; numbers and names never meet.

    >>> sorted([Path("s/10"), Path("runs/a"), Path("s/2")], key=_natural)
    [PosixPath('runs/a'), PosixPath('s/2'), PosixPath('s/10')]
    """
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)
