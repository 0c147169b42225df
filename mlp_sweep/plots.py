"""Figures: a run's learning curves, and a sweep's curves and objective per parameter."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlp_sweep.records import PARETO_PLOT, STUDY_PLOTS, atomic_write

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO notes are not ours


def plot_curves(history: pd.DataFrame, path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, saved as a PNG.

    Every run of a sweep draws one, so it is kept cheap: fixed margins, no pyplot state, few
    tick labels (text is most of the drawing time).
    """
    fig = Figure(figsize=(9, 3.5))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.88, wspace=0.25)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = history["epoch"].to_numpy()
    for split, style in (("train", "-"), ("val", "--")):
        if history[f"{split}_loss"].notna().any():
            ax_loss.plot(epochs, history[f"{split}_loss"].to_numpy(), style, label=split)
            ax_acc.plot(epochs, history[f"{split}_acc"].to_numpy(), style, label=split)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        _label(ax, name)
        ax.locator_params(nbins=5)
    fig.suptitle(title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=72))


def plot_summary(
    runs: pd.DataFrame,
    histories: dict[str, pd.DataFrame],
    params: Sequence[str],
    metric: str,
    path: Path,
) -> None:
    """One figure for a sweep: every run's curves overlaid, then ``metric`` against each
    swept parameter. ``runs`` has one row per run, indexed like ``histories``, with a
    ``legend`` column naming each run."""
    curve = "val_acc" if metric.endswith("_acc") else "val_loss"
    if not any(h[curve].notna().any() for h in histories.values()):
        curve = curve.replace("val_", "train_")
    ncols = 4
    rows = 1 + -(-len(params) // ncols)  # the curves, then the parameters, 4 to a row
    fig, axes = plt.subplots(rows, ncols, figsize=(4.5 * ncols, 3.8 * rows), squeeze=False)
    # The curves take two panels each: a wide panel reads better than a legend.
    for ax in axes[0]:
        ax.remove()
    ax_curve = fig.add_subplot(rows, 2, 1)
    ax_loss = fig.add_subplot(rows, 2, 2)
    for run, history in histories.items():
        label = runs.at[run, "legend"] if run in runs.index else run
        ax_curve.plot(history["epoch"], history[curve], label=label, alpha=0.8)
        ax_loss.plot(history["epoch"], history["train_loss"], label=label, alpha=0.8)
    few = len(histories) <= 12  # a legend of more runs hides the curves
    _label(ax_curve, curve, legend=few)
    _label(ax_loss, "train_loss", legend=few)
    scatter_axes = axes[1:].ravel()
    for ax, param in zip(scatter_axes, params):
        _scatter(ax, runs, param, metric)
    for ax in scatter_axes[len(params) :]:
        ax.axis("off")
    fig.suptitle(f"{len(runs)} runs; {metric} against each swept parameter")
    fig.tight_layout()
    _save(fig, path)


def plot_study(study: optuna.Study, folder: Path, objectives: Sequence[str] = ()) -> None:
    """Optuna's optimisation history, parameter importances, parallel coordinates and slice
    plots, each as a PNG in ``folder``; a plot the study cannot make yet is skipped.

    A study with several ``objectives`` gets those plots for the first one, and its Pareto
    front (of two or three objectives) as a fifth figure.
    """
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
    for name, make in zip(names, makers):
        try:
            with warnings.catch_warnings():  # experimental plots, and layout notes
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                axes = make(study)
                figure = np.ravel(axes)[0].figure
                figure.tight_layout()
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.info("skipped %s: %s", name, err)
            plt.close("all")
            continue
        _save(figure, folder / name)


def _first_value(trial: optuna.trial.FrozenTrial) -> float:
    return trial.values[0]


def _scatter(ax: plt.Axes, runs: pd.DataFrame, param: str, metric: str) -> None:
    values = pd.to_numeric(runs[param], errors="coerce")
    if values.notna().all():
        ax.scatter(values, runs[metric])
        if values.min() > 0 and values.max() / values.min() >= 20:
            ax.set_xscale("log")
    else:  # categories, lists of layer widths, or a mix with None
        labels = runs[param].map(str)  # astype(str) keeps NaN as NaN in pandas 3
        order = sorted(labels.unique())
        ax.scatter(labels.map(order.index), runs[metric])
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)


def _label(ax: plt.Axes, ylabel: str, legend: bool = True) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best" if len(ax.lines) > 2 else "upper right", fontsize="small")


def _save(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
