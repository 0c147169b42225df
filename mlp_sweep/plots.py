"""Figures: a run's learning curves, and a sweep's curves and objective per parameter."""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.layout_engine import TightLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, NullFormatter

from mlp_sweep import records
from mlp_sweep.records import PARETO_PLOT, STUDY_PLOTS, atomic_write, direction

if TYPE_CHECKING:
    import optuna
    import pandas as pd

log = logging.getLogger(__name__)
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes are not ours

# Parameters drawn on a log axis whatever their values: they are swept on a log scale.
LOG_SCALE = ("lr", "init_std")
LOG_SPAN = 20  # any other numeric parameter whose largest value is more than this x its least
PARALLEL_FROM = 3  # swept parameters from which summary.png adds a parallel-coordinates panel
LEGEND_BESIDE = 45  # runs' settings longer than this: the legend gets a row below the curves
LEGEND_INSIDE = 4  # and so it does for more runs than this, whose curves it would cover
LEGEND_WIDE = 230  # and is cut at this many characters (the table holds every setting)
LABEL_WIDE = 30  # a value's label on an axis is cut to this many characters


def plot_curves(history: Mapping[str, Sequence[float]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, saved as a PNG; ``history`` holds a
    column of values per field of ``records.EPOCH_FIELDS`` (a DataFrame, or a dict of lists).

    Every run of a sweep draws one, so it is kept cheap: one figure per process, redrawn with
    each run's data (making its axes and ticks anew took a third of the time), fixed margins,
    few tick labels (text is most of the drawing time).
    """
    with _CURVES_LOCK:  # one figure per process: runs in threads take turns
        _draw_curves(history, path, title)


def _draw_curves(history: Mapping[str, Sequence[float]], path: Path, title: str) -> None:
    fig, lines = _curves_figure()
    epochs = np.asarray(history["epoch"])
    for key, line in lines.items():
        values = np.asarray(history[key], dtype=float)  # None (not measured): NaN
        line.set_data(epochs, values)
        line.set_visible(bool(np.isfinite(values).any()))
        line.set_marker("o" if len(epochs) == 1 else "")  # one epoch: a point, not a line
    for ax, corner in zip(fig.axes, ("upper right", "lower right")):  # loss, accuracy
        ax.relim(visible_only=True)
        ax.autoscale_view()
        if len(epochs) == 1:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        shown = [line for line in ax.lines if line.get_visible()]
        if shown:
            ax.legend(handles=shown, loc=corner, fontsize="small")
        elif ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(title, fontsize="medium")
    # The title is the file's too, for image viewers (and a test) to read.
    png = {"format": "png", "dpi": 72, "metadata": {"Title": title}}
    atomic_write(path, lambda tmp: fig.savefig(tmp, **png))


_CURVES_LOCK = threading.Lock()


@functools.cache
def _curves_figure() -> tuple[Figure, dict[str, Line2D]]:
    """The figure of :func:`plot_curves`, made once: two panels, a line per split."""
    fig = Figure(figsize=(9, 3.5))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.88, wspace=0.25)
    ax_loss, ax_acc = fig.subplots(1, 2)
    lines = {}
    for split, style in (("train", "-"), ("val", "--")):
        (lines[f"{split}_loss"],) = ax_loss.plot([], [], style, label=split)
        (lines[f"{split}_acc"],) = ax_acc.plot([], [], style, label=split)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        _label(ax, name, legend=False)
        ax.locator_params(nbins=5)
    return fig, lines


def summary_figure(
    runs: pd.DataFrame,
    histories: dict[str, pd.DataFrame],
    params: Sequence[str],
    metric: str,
) -> Figure:
    """One figure for a sweep: every run's curves overlaid, then ``metric`` against each
    swept parameter, then, for three parameters or more, a parallel-coordinates panel.
    ``runs`` has one row per run, indexed like ``histories``, with a ``legend`` column naming
    each run."""
    curve = "val_acc" if metric.endswith("_acc") else "val_loss"
    if not any(h[curve].notna().any() for h in histories.values()):
        curve = curve.replace("val_", "train_")
    ncols = 4
    parallel = len(params) >= PARALLEL_FROM
    labels = {run: str(runs.at[run, "legend"] if run in runs.index else run) for run in histories}
    # A legend of more runs than colours names two runs by one colour (and hides the curves).
    few = len(histories) <= len(matplotlib.rcParams["axes.prop_cycle"])
    # A legend inside the curves covers some of them: one of more than a few runs, or of
    # settings too long, gets a row of its own below them (two columns of short settings).
    longest = max(map(len, labels.values()), default=0)
    below = few and (len(histories) > LEGEND_INSIDE or longest > LEGEND_BESIDE)
    columns = 2 if longest <= LEGEND_BESIDE else 1
    # The curves, (their legend,) then the parameters, 4 to a row, then the parallel
    # coordinates; only the panels drawn are made (an Axes costs about as much to make as to
    # draw).
    heights = [3.8] * (1 + -(-len(params) // ncols) + parallel)
    if below:
        heights.insert(1, 0.3 + 0.17 * -(-len(histories) // columns))
    # not pyplot's: nothing to close, faster import
    fig = Figure(figsize=(4.5 * ncols, sum(heights)))
    grid = fig.add_gridspec(len(heights), ncols, height_ratios=heights)
    # The curves take two panels each: a wide panel reads better than a legend.
    ax_curve = fig.add_subplot(grid[0, : ncols // 2])
    ax_loss = fig.add_subplot(grid[0, ncols // 2 :])
    for run, history in histories.items():
        style = {"label": labels[run], "alpha": 0.8, "marker": "o" if len(history) == 1 else None}
        ax_curve.plot(history["epoch"], history[curve], **style)  # one epoch: a point
        ax_loss.plot(history["epoch"], history["train_loss"], **style)
    _label(ax_curve, curve, legend=few and not below)
    _label(ax_loss, "train_loss", legend=few and not below)
    if below:
        ax_legend = fig.add_subplot(grid[1, :])
        ax_legend.axis("off")
        handles, texts = ax_curve.get_legend_handles_labels()
        texts = [t if len(t) <= LEGEND_WIDE else f"{t[: LEGEND_WIDE - 1]}…" for t in texts]
        ax_legend.legend(
            handles, texts, loc="upper left", fontsize="small", frameon=False, ncols=columns
        )
    first = 1 + below  # the first row of parameters
    for i, param in enumerate(params):
        _scatter(fig.add_subplot(grid[first + i // ncols, i % ncols]), runs, param, metric)
    if parallel:
        _parallel(fig, fig.add_subplot(grid[-1, :]), runs, params, metric)
    inch = 1 / fig.get_figheight()
    fig.suptitle(
        f"{records.runs(len(runs))}; {metric} against each swept parameter", y=1 - 0.1 * inch
    )
    _lay_out(fig)  # the title too: the layout leaves it room above the panels
    return fig


def plot_study(study: optuna.Study, folder: Path, objectives: Sequence[str] = ()) -> None:
    """Optuna's optimisation history, parameter importances, parallel coordinates and slice
    plots, each as a PNG in ``folder``; a plot the study cannot make yet is skipped.

    A study with several ``objectives`` gets those plots for the first one, and its Pareto
    front (of two or three objectives) as a fifth figure.
    """
    # Optuna's plots draw on pyplot's figures: on Agg, files only, never a window. (Chosen
    # here, not for the module: a notebook that draws the summary figure keeps its backend.)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    makers = [
        optuna_plots.plot_optimization_history,
        optuna_plots.plot_param_importances,
        optuna_plots.plot_parallel_coordinate,
        optuna_plots.plot_slice,
    ]
    names = list(STUDY_PLOTS)
    if len(study.directions) > 1:
        makers = [
            functools.partial(make, target=_first_value, target_name=objectives[0])
            for make in makers
        ]
        makers.append(functools.partial(optuna_plots.plot_pareto_front, target_names=objectives))
        names.append(PARETO_PLOT)
    # Optuna's plots set the ggplot style for the whole process: only for theirs here.
    with matplotlib.rc_context():
        for name, make in zip(names, makers):
            try:
                with warnings.catch_warnings():  # experimental plots, and layout notes
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    warnings.simplefilter("ignore", UserWarning)
                    axes = make(study)
                    figure = np.ravel(axes)[0].figure
                    _lay_out(figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                log.info("skipped %s: %s", name, err)
                plt.close("all")
                continue
            save(figure, folder / name)
            plt.close(figure)


def _first_value(trial: optuna.trial.FrozenTrial) -> float:
    return trial.values[0]


def _scatter(ax: Axes, runs: pd.DataFrame, param: str, metric: str) -> None:
    import pandas as pd  # the summary's figure only: a run's curves never need it

    # A define-by-run space draws some parameters for some runs only: the others lack it
    # (NaN), and are left out. A run that set it to null (None: init_std=null) has it.
    has = ~runs[param].map(_absent)
    nulls = has & runs[param].map(lambda value: value is None)
    numbers = has & ~nulls
    values = pd.to_numeric(runs.loc[numbers, param], errors="coerce")
    flags = runs.loc[has, param].map(lambda value: isinstance(value, bool)).any()
    if numbers.any() and values.notna().all() and not flags:
        _numeric(ax, param, values, runs.loc[numbers, metric], runs.loc[nulls, metric])
    else:  # categories, lists of layer widths, flags
        order = _categories(runs.loc[has, param])
        ax.scatter(runs.loc[has, param].map(_text).map(order.index), runs.loc[has, metric])
        ax.set_xticks(range(len(order)), map(_cut, order), rotation=30, ha="right")
        ax.set_xlim(-0.5, len(order) - 0.5)  # categories as columns, not at the edges
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)


def _numeric(ax: Axes, param: str, values: pd.Series, scores: pd.Series, nulls: pd.Series) -> None:
    """A numeric parameter's ``scores`` against its ``values`` (on a log axis if they call
    for one), and those of the runs that set it to null (``nulls``) in a column of their own,
    left of the numbers."""
    ax.scatter(values, scores)
    unique = sorted(set(values))
    ticks = None  # the locator's
    if log := _log_scale(param, values):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^-1, 3x10^-1, ... collide
        if len(unique) <= 6:  # a grid: its values are the ticks, but for close ones
            ticks = _spread(unique)
    elif (values == values.round()).all():  # epochs, widths, depths: no 1.25
        ax.xaxis.set_major_locator(MaxNLocator("auto", steps=[1, 2, 2.5, 5, 10], integer=True))
    if nulls.empty:
        if ticks is not None:
            ax.set_xticks(ticks, [f"{v:.4g}" for v in ticks])
        return
    low, high = unique[0], unique[-1]
    if ticks is None:
        near = 1e-9 * (high - low or abs(low))  # a tick at an end may be off by a rounding
        inside = ax.xaxis.get_major_locator().tick_values(low, high)
        ticks = [t for t in inside if low - near <= t <= high + near]
        ticks = ticks or unique[:: max(len(unique) - 1, 1)]
    if log:  # a quarter of the numbers' span (or a decade) below the least
        x = low / (high / low if high > low else 10) ** 0.25
        between = (x * low) ** 0.5
    else:
        x = low - ((high - low) or abs(low) or 1) / 4
        between = (x + low) / 2
    ax.scatter([x] * len(nulls), nulls, color="0.35", marker="s")  # no run's colour
    ax.axvline(between, color="0.6", lw=0.8, ls=":")  # null is no number
    ax.set_xticks([x, *ticks], ["null", *(f"{v:.4g}" for v in ticks)])
    if log:  # the numbers' minor ticks, none in null's column
        minor = ax.xaxis.get_minor_locator().tick_values(between, high * 10)  # and margin
        ax.xaxis.set_minor_locator(FixedLocator([t for t in minor if t > between]))


def _spread(values: Sequence[float]) -> list[float]:
    """The least and the greatest of ``values`` (sorted, positive, drawn on a log axis), and
    those between that are far enough from the last one kept for their labels not to meet
    (a search's close draws, 0.08454 and 0.09857, would)."""
    logs = np.log10(values)
    room = (logs[-1] - logs[0]) / 6
    kept = [0]
    for i in range(1, len(values)):
        if logs[i] - logs[kept[-1]] >= room:
            kept.append(i)
    last = len(values) - 1
    if kept[-1] != last:  # the greatest, in place of one too close to it (not the least)
        if len(kept) > 1:
            kept[-1] = last
        else:
            kept.append(last)
    return [values[i] for i in kept]


def _parallel(
    fig: Figure, ax: Axes, runs: pd.DataFrame, params: Sequence[str], metric: str
) -> None:
    """One line per run across an axis per parameter and one for ``metric``, coloured by
    ``metric``: which combinations do well. Each axis is scaled to its own range (log for
    log-scale parameters); categories are spread evenly."""
    done = runs[runs[metric].notna()]
    if done.empty:
        ax.axis("off")
        return
    names = [*params, metric]
    positions, ticks = [], []
    for name in names:
        position, labels = _axis_positions(done[name], log=name != metric and name in params)
        positions.append(position)
        ticks.append(labels)
    lines = np.column_stack(positions)
    score = done[metric].to_numpy(dtype=float)
    span = np.ptp(score) or 1.0
    colour = matplotlib.colormaps["viridis"]((score - score.min()) / span)
    order = np.argsort(score if direction(metric) == "maximize" else -score)  # best on top
    x = np.arange(len(names))
    for i in order:
        ax.plot(x, lines[i], color=colour[i], alpha=0.8, lw=1.5)
    for i, labels in enumerate(ticks):
        ax.axvline(i, color="0.6", lw=0.8)
        for value, text in labels:
            ax.annotate(
                text,
                (i, value),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=8,
                va="center",
                color="0.2",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                zorder=3,
            )
    long = max(map(len, names)) * len(names) > 110  # names that would run into each other
    ax.set_xticks(x, names, rotation=20 if long else 0, ha="right" if long else "center")
    ax.set_xlim(-0.2, len(names) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"parallel coordinates, coloured by {metric}", fontsize="medium")
    mappable = ScalarMappable(cmap="viridis", norm=Normalize(score.min(), score.min() + span))
    fig.colorbar(mappable, ax=ax, label=metric, pad=0.01)


def _axis_positions(column: pd.Series, log: bool) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """A column as positions in [0, 1], with the labels to show on its axis; ``log``: on a
    log scale if its values call for one."""
    import pandas as pd

    # Runs that lack the parameter (absent) or set it to null sit below its numbers.
    special = column.map(lambda value: _text(value) if _missing(value) else None)
    below = sorted(set(special.dropna()))  # absent, null
    numbers = special.isna()
    values = pd.to_numeric(column[numbers], errors="coerce")
    flags = column[numbers].map(lambda value: isinstance(value, bool)).any()
    if values.isna().any() or flags or not numbers.any():  # categories, lists, flags
        order = _categories(column)
        step = 1 / max(len(order) - 1, 1)
        positions = column.map(_text).map(order.index).to_numpy(dtype=float) * step
        return positions, [(i * step, _cut(label)) for i, label in enumerate(order)]
    log = log and _log_scale(str(column.name), values)
    shown = np.log10(values) if log else values.astype(float)
    low, high = shown.min(), shown.max()
    start = 0.15 * len(below)  # the numbers above the places of absent and null
    scaled = start + (1 - start) * (shown - low) / ((high - low) or 1.0)
    positions = pd.Series(np.nan, index=column.index)
    positions[numbers] = scaled
    for i, label in enumerate(below):
        positions[special == label] = 0.15 * i
    unique = sorted(set(values))
    if len(unique) > 6:  # many values (a search): label the ends only
        unique = [unique[0], unique[-1]]
    where = dict(zip(values, scaled))
    labels = [(0.15 * i, label) for i, label in enumerate(below)]
    return positions.to_numpy(dtype=float), labels + [(where[v], f"{v:.4g}") for v in unique]


def _categories(column: pd.Series) -> list[str]:
    return sorted(column.map(_text).unique())


def _text(value: object) -> str:
    """A value as an axis labels it: a float to 4 significant digits; null, true and false
    as a config writes them; "absent" for a run that has not the parameter (NaN)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if _absent(value):
        return "absent"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cut(label: str) -> str:
    """An axis label of at most LABEL_WIDE characters: a long one (a list of many layers)
    keeps its start and end (the table holds it whole)."""
    if len(label) <= LABEL_WIDE:
        return label
    half = (LABEL_WIDE - 1) // 2
    return f"{label[:half]}…{label[-half:]}"


def _absent(value: object) -> bool:
    """A parameter the run has not (NaN), unlike one it set to null (None)."""
    return isinstance(value, float) and np.isnan(value)


def _missing(value: object) -> bool:
    return value is None or _absent(value)


def _log_scale(param: str, values: pd.Series) -> bool:
    low = values.min()
    return low > 0 and (param in LOG_SCALE or values.max() / low > LOG_SPAN)


def _label(ax: Axes, ylabel: str, legend: bool = True) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs: whole numbers
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best" if len(ax.lines) > 2 else "upper right", fontsize="small")


def _lay_out(fig: Figure) -> None:
    """Fit the panels, their labels and the figure's title into ``fig``, as
    ``Figure.tight_layout`` does, but measuring each panel once. tight_layout leaves the
    figure a layout engine, and saving a figure that has one draws it twice (the first time
    only to lay it out); and given a rectangle to fit the panels in, as it is by default (the
    whole figure), it measures every panel twice, the second time to the same result. (Some
    of Optuna's figures come with tight_layout's engine: it is taken off.) A colour bar made
    beside the panels, out of their grid (Optuna's slice figure), goes to the figure's right
    edge, its labels inside it, and the panels end left of it."""
    fig.set_layout_engine("none")
    TightLayoutEngine(rect=None).execute(fig)
    beside = [ax for ax in fig.axes if ax.get_subplotspec() is None]
    if not beside or min(ax.get_position().x0 for ax in beside) <= 0.5:
        return  # none, or not right of the panels
    width = fig.bbox.width
    if get_renderer := getattr(fig.canvas, "get_renderer", None):  # Agg, as plot_study draws
        for ax in beside:
            ends = ax.get_tightbbox(get_renderer()).x1
            ax.set_position(ax.get_position().translated((fig.bbox.x1 - 8 - ends) / width, 0))
    fig.subplots_adjust(right=min(ax.get_position().x0 for ax in beside) - 24 / width)


def save(fig: Figure, path: Path) -> None:
    """``fig`` as a PNG at ``path``, written atomically."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
