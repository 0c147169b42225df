"""The side-by-side table and summary.png of collected sweeps."""

import itertools
import struct
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mlp_sweep import cli, collect, plots
from mlp_sweep.plots import plot_curves, plot_study, save, summary_figure


def png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def history(epochs: list[float], val_acc: float = 0.5) -> pd.DataFrame:
    """A run's per-epoch records, flat but for the last val_acc."""
    flat = {key: [0.5] * len(epochs) for key in ("train_loss", "val_loss", "train_acc")}
    return pd.DataFrame({"epoch": epochs, **flat, "val_acc": [0.5] * (len(epochs) - 1) + [val_acc]})


def test_a_setting_one_sweep_lacks_is_an_empty_cell(run_app, tmp_path, capsys):
    assert run_app("-m", "hidden=20,40", "epochs=1", "hydra.sweep.dir=outputs/a").code == 0
    assert run_app("-m", "hidden=40", "epochs=1", "hydra.sweep.dir=outputs/b").code == 0
    assert cli.main(["compare", str(tmp_path / "outputs/a"), str(tmp_path / "outputs/b")]) == 0
    side = capsys.readouterr().out.split("side by side")[1].split("\n\n")[1]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in side.splitlines()[2:]]
    assert [(row[0], row[2]) for row in rows] == [("20", ""), ("40", rows[1][1])]
    assert "nan" not in side


def test_three_swept_parameters_add_a_parallel_coordinates_row(run_app, tmp_path):
    args = ["-m", "lr=0.05,0.5", "hidden=20,40", "epochs=1"]
    assert run_app(*args, "hydra.sweep.dir=outputs/two").code == 0
    assert run_app(*args, "init_std=0.01,0.3", "hydra.sweep.dir=outputs/three").code == 0
    two = png_size(tmp_path / "outputs/two/summary.png")
    three = png_size(tmp_path / "outputs/three/summary.png")
    assert two[1] == 2 * 380  # curves, parameters
    legend = round(100 * (0.3 + 0.17 * 4))  # the 8 runs' legend, in two columns
    assert three[1] == 3 * 380 + legend  # and parallel coordinates


def test_a_summary_figure_is_drawn_once_when_it_is_saved(tmp_path):
    # It is laid out when it is made: saving it must not draw it a second time to lay it out.
    names = ["a", "b", "c"]
    histories = {name: history([1.0, 2.0], val_acc=0.5 + i / 10) for i, name in enumerate(names)}
    params = {"lr": [0.1, 0.2, 0.5], "hidden": ["[10]", "[20, 10]", "[30]"],
              "init_std": [0.01, 0.1, 0.1]}  # fmt: skip
    runs = pd.DataFrame({"legend": names, **params, "val_acc": [0.5, 0.6, 0.7]}, index=names)
    figure = summary_figure(runs, histories, ["lr", "hidden", "init_std"], "val_acc")
    draws = []
    figure.canvas.mpl_connect("draw_event", draws.append)
    save(figure, tmp_path / "summary.png")
    assert len(draws) == 1
    assert png_size(tmp_path / "summary.png")[1] == 3 * 380  # curves, parameters, parallel


def test_laying_out_a_figure_measures_each_panel_once(tmp_path, monkeypatch):
    # Measuring a panel (its labels' extents) is most of a layout's time.
    measured: list[Axes] = []
    measure = Axes.get_tightbbox

    def counted(self: Axes, *args, **kwargs):
        measured.append(self)
        return measure(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "get_tightbbox", counted)
    names = ["a", "b", "c"]
    histories = {name: history([1.0, 2.0]) for name in names}
    runs = pd.DataFrame({"legend": names, "lr": [0.1, 0.2, 0.5], "hidden": [10, 20, 30],
                         "init_std": [0.01, 0.1, 0.1], "val_acc": [0.5, 0.6, 0.7]},
                        index=names)  # fmt: skip
    figure = summary_figure(runs, histories, ["lr", "hidden", "init_std"], "val_acc")
    assert set(Counter(map(id, measured)).values()) == {1}
    assert {id(ax) for ax in figure.axes if ax.axison} <= set(map(id, measured))

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 0.01, 1) + t.suggest_int("h", 1, 9), 6)
    measured.clear()
    plot_study(study, tmp_path)
    assert len(list(tmp_path.glob("*.png"))) == 4 and measured
    assert set(Counter(map(id, measured)).values()) == {1}


def test_a_studys_figures_leave_the_style_of_later_figures_as_it_was(tmp_path):
    # Optuna's plots set matplotlib's ggplot style for the whole process: seven colours
    # and a grey background for every figure drawn after them (a summary, a notebook's).
    before = dict(matplotlib.rcParams)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 0.01, 1) + t.suggest_int("h", 1, 9), 6)
    plot_study(study, tmp_path)
    changed = {k for k, v in matplotlib.rcParams.items() if str(before.get(k)) != str(v)}
    assert changed == set()


def test_a_studys_colour_bar_covers_no_panel(tmp_path, monkeypatch):
    # Optuna's slice figure makes its colour bar beside the panels, out of their grid.
    saved = {}
    save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: saved.setdefault(path.name, fig))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(
        lambda t: t.suggest_float("lr", 0.01, 1, log=True) + t.suggest_int("h", 1, 9)
        + (t.suggest_categorical("optimizer", ["sgd", "adam"]) == "sgd"),
        8,
    )  # fmt: skip
    plot_study(study, tmp_path)
    figure = saved["optuna_slice.png"]
    renderer = FigureCanvasAgg(figure).get_renderer()
    (bar,) = [ax for ax in figure.axes if ax.get_subplotspec() is None]
    panels = [ax for ax in figure.axes if ax is not bar]
    assert len(panels) == 3
    box = bar.get_tightbbox(renderer)
    assert not any(box.overlaps(ax.get_tightbbox(renderer)) for ax in panels)
    assert box.x1 <= figure.bbox.x1  # its labels inside the figure
    assert figure.bbox.x1 - box.x1 <= 0.02 * figure.bbox.width  # and no empty band right of it
    assert min(ax.get_position().x0 for ax in panels) < 0.1  # the panels fill the rest
    save(figure, tmp_path / "slice.png")


def test_a_run_of_one_epoch_is_a_point_on_the_summary_curves():
    histories = {"one": history([1.0]), "two": history([1.0, 2.0])}
    runs = pd.DataFrame(
        {"legend": ["one", "two"], "lr": [0.1, 0.2], "val_acc": [0.5, 0.5]}, index=["one", "two"]
    )
    figure = summary_figure(runs, histories, ["lr"], "val_acc")
    for panel in figure.axes[:2]:  # the curves, then the training loss
        assert [line.get_marker() for line in panel.lines] == ["o", "None"]
    alone = summary_figure(runs.loc[["one"]], {"one": histories["one"]}, ["lr"], "val_acc")
    for panel in alone.axes[:2]:
        low, high = panel.get_xlim()
        shown = [tick for tick in panel.get_xticks() if low <= tick <= high]
        assert shown == [1.0]  # its epoch, not fractions around it


def test_a_whole_numbered_parameter_is_ticked_at_whole_numbers():
    names = ["a", "b"]
    histories = {name: history([1.0, 2.0]) for name in names}
    for swept, ticks in (([1, 3], [1, 2, 3]), ([25, 50], [25, 30, 35, 40, 45, 50])):
        runs = pd.DataFrame({"legend": names, "p": swept, "val_acc": [0.5, 0.6]}, index=names)
        panel = summary_figure(runs, histories, ["p"], "val_acc").axes[2]
        low, high = panel.get_xlim()
        assert [tick for tick in panel.get_xticks() if low <= tick <= high] == ticks


def test_a_runs_curves_do_not_depend_on_the_runs_drawn_before_it(tmp_path):
    # One figure is redrawn for every run of a process: nothing of one run may stay in it.
    epochs = np.arange(1.0, 11.0)
    full = pd.DataFrame({"epoch": epochs, "train_loss": 2 / epochs, "val_loss": 2.2 / epochs,
                         "train_acc": 1 - 1 / epochs, "val_acc": 0.9 - 1 / epochs})  # fmt: skip
    short = pd.DataFrame({"epoch": [1.0], "train_loss": [0.5], "val_loss": [np.nan],
                          "train_acc": [0.8], "val_acc": [np.nan]})  # fmt: skip
    for name, history in (("full1", full), ("short1", short), ("full2", full), ("short2", short)):
        plot_curves(history, tmp_path / f"{name}.png", name[:-1])
    png = {path.stem: path.read_bytes() for path in tmp_path.glob("*.png")}
    assert png["full1"] == png["full2"] != png["short1"] == png["short2"]


def test_settings_too_long_to_sit_beside_the_curves_get_a_legend_row_of_their_own():
    # A define-by-run search varies many settings: each run's label is long.
    names = [f"{i}: " + ", ".join(f"setting_{k}={i * k}" for k in range(12)) for i in range(8)]
    names[-1] += " x" * 200  # longer than a row: cut, the table holds it whole
    histories = {name: history([1.0, 2.0]) for name in names}
    runs = pd.DataFrame(
        {"legend": names, "lr": np.linspace(0.1, 0.8, 8), "val_acc": 0.5}, index=names
    )
    figure = summary_figure(runs, histories, ["lr"], "val_acc")
    renderer = FigureCanvasAgg(figure).get_renderer()
    (legend,) = figure.legends + [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    box = legend.get_window_extent(renderer)
    assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1  # not cut at an edge
    assert figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1
    panels = [ax.get_window_extent(renderer) for ax in figure.axes if ax.axison]
    assert len(panels) == 3 and not any(box.overlaps(panel) for panel in panels)
    shown = [text.get_text() for text in legend.get_texts()]
    assert shown[:-1] == names[:-1] and shown[-1].endswith("…") and len(shown[-1]) < 240


def test_the_legend_of_more_than_a_few_runs_covers_none_of_their_curves():
    names = [f"{i}: hidden={50 * 2 ** (i // 2)}, lr={0.1 if i % 2 else 0.5}" for i in range(8)]
    histories = {
        name: history([1.0, 2.0, 3.0], val_acc=0.9 - i / 20) for i, name in enumerate(names)
    }
    runs = pd.DataFrame({"legend": names, "lr": 0.1, "val_acc": 0.5}, index=names)
    figure = summary_figure(runs, histories, ["lr"], "val_acc")
    renderer = FigureCanvasAgg(figure).get_renderer()
    (legend,) = [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    box = legend.get_window_extent(renderer)
    panels = [ax.get_window_extent(renderer) for ax in figure.axes if ax.axison]
    assert len(panels) == 3 and not any(box.overlaps(panel) for panel in panels)
    assert [text.get_text() for text in legend.get_texts()] == names
    assert box.height < 0.6 * panels[0].height  # short settings: in two columns


def test_a_setting_of_null_or_a_flag_is_drawn_and_named_as_a_config_writes_it(run_app, tmp_path):
    # init_std=null (PyTorch's own init) is a setting like any other: its runs are drawn.
    args = ["-m", "init_std=null,0.1", "optimizer=adam", "+optimizer.amsgrad=true,false"]
    assert run_app(*args, "epochs=1", "hydra.sweep.dir=s").code == 0
    c = collect.collect([tmp_path / "s"], None)
    figure = collect.summary_figure(c)
    panels = {ax.get_xlabel(): ax for ax in figure.axes[2:4]}
    for param, labels in (("init_std", ["null", "0.1"]), ("optimizer.amsgrad", ["false", "true"])):
        assert sum(len(c.get_offsets()) for c in panels[param].collections) == 4
        assert [t.get_text() for t in panels[param].get_xticklabels()] == labels
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "0: init_std=null, optimizer.amsgrad=true" in legend
    table = (tmp_path / "s" / "summary.md").read_text()
    assert "True" not in table and "| true " in table and "| null " in table


def test_the_tick_labels_of_a_parameter_never_overlap():
    # A grid's few values are its ticks; a search's few draws may be close (0.08454 and
    # 0.09857 of a log axis), and then the axis keeps its own ticks.
    names = ["a", "b", "c", "d"]
    histories = {name: history([1.0, 2.0]) for name in names}
    for stds, nulls in ((([0.08454, 0.09857, 0.3, 0.0051]), 0), ([0.08454, 0.09857, 0.3], 1),
                        ([0.01, 0.05, 0.1, 0.5], 0)):  # fmt: skip
        values = [None] * nulls + stds
        runs = pd.DataFrame({"legend": names[: len(values)], "val_acc": 0.5},
                            index=names[: len(values)])  # fmt: skip
        runs["init_std"] = pd.Series(values, index=runs.index, dtype=object)
        figure = summary_figure(runs, histories, ["init_std"], "val_acc")
        panel = figure.axes[2]
        canvas = FigureCanvasAgg(figure)
        canvas.draw()  # the ticks, as saved
        renderer = canvas.get_renderer()
        low, high = panel.get_xlim()
        boxes = sorted(
            (label.get_window_extent(renderer) for label in panel.get_xticklabels()
             if label.get_text() and low <= label.get_position()[0] <= high),
            key=lambda box: box.x0,
        )  # fmt: skip
        assert len(boxes) >= 2
        assert all(left.x1 < right.x0 for left, right in itertools.pairwise(boxes)), stds
        shown = [t.get_text() for t in panel.get_xticklabels() if t.get_text() != "null"]
        assert shown[0] == f"{min(stds):.4g}" and shown[-1] == f"{max(stds):.4g}"  # the ends
        if stds == [0.01, 0.05, 0.1, 0.5]:  # a grid's values, spread out: they are the ticks
            assert [t.get_text() for t in panel.get_xticklabels()] == ["0.01", "0.05", "0.1", "0.5"]


def test_null_beside_numbers_keeps_their_axis_and_order():
    # init_std=null (PyTorch's init) beside numbers: the numbers keep their log axis, in
    # order, and null gets a place of its own on it.
    names = [str(i) for i in range(34)]
    grid = [None, 0.001, 0.1, 1e-5]
    search = list(np.geomspace(0.005, 0.1, 30))  # a search draws many values
    for stds in (grid, grid + search):
        runs = pd.DataFrame({"legend": names[: len(stds)], "init_std": stds, "nesterov": False,
                             "lr": 0.1, "val_acc": np.linspace(0.1, 0.9, len(stds))},
                            index=names[: len(stds)])  # fmt: skip
        runs["init_std"] = pd.Series(stds, index=runs.index, dtype=object)  # as collected
        runs.loc["0", "nesterov"] = True
        histories = {name: history([1.0, 2.0]) for name in runs.index}
        figure = summary_figure(runs, histories, ["init_std", "nesterov", "lr"], "val_acc")
        panel = figure.axes[2]
        assert panel.get_xscale() == "log"
        assert len(np.concatenate([c.get_offsets() for c in panel.collections])) == len(stds)
        ticks = [(t.get_position()[0], t.get_text()) for t in panel.get_xticklabels()]
        shown = [text for _, text in sorted(ticks)]
        assert shown[0] == "null" and len(shown) <= 6
        red, green, blue, _ = panel.collections[1].get_facecolor()[0]  # the null runs:
        assert red == green == blue  # grey, no run's colour in the curves' legend
        (divide,) = [line.get_xdata()[0] for line in panel.lines]  # null | numbers
        low, high = panel.get_xlim()
        minor = [t for t in panel.xaxis.get_minorticklocs() if low <= t <= high]
        assert minor and min(minor) > divide  # the numbers' minor ticks, none in null's column
        if stds == grid:
            assert shown == ["null", "1e-05", "0.001", "0.1"]
        parallel = figure.axes[-2]  # then its colour bar
        labels = [(text.xy[1], text.get_text()) for text in parallel.texts if text.xy[0] == 0]
        shown = [text for _, text in sorted(labels)]
        assert shown[0] == "null" and shown[1] == "1e-05" and shown[-1] == "0.1"
        flags = [text.get_text() for text in parallel.texts if text.xy[0] == 1]
        assert sorted(flags) == ["false", "true"]


def test_a_long_value_is_cut_on_its_axis_and_the_panels_keep_their_height():
    names = ["a", "b", "c"]
    widths = [str([8] * 30), "[16]", str([300, 200, 100, 50, 25, 12])]
    runs = pd.DataFrame({"legend": names, "hidden": widths, "lr": [0.1, 0.2, 0.3],
                         "init_std": [0.1, 0.2, 0.3], "val_acc": [0.5, 0.6, 0.7]},
                        index=names)  # fmt: skip
    histories = {name: history([1.0, 2.0]) for name in names}
    figure = summary_figure(runs, histories, ["hidden", "lr", "init_std"], "val_acc")
    labels = [t.get_text() for t in figure.axes[2].get_xticklabels()]
    assert len(labels) == 3 and max(map(len, labels)) <= 30 and "…" in labels[-1]
    assert all(ax.get_position().height > 0.15 for ax in figure.axes[:3])


def test_runs_share_no_colour_where_the_curves_have_a_legend():
    names = [f"run {i}" for i in range(12)]
    histories = {name: history([1.0, 2.0]) for name in names}
    runs = pd.DataFrame({"legend": names, "lr": np.linspace(0.1, 1, 12), "val_acc": 0.5},
                        index=names)  # fmt: skip
    for count in (10, 11, 12):
        some = {name: histories[name] for name in names[:count]}
        panel = summary_figure(runs.iloc[:count], some, ["lr"], "val_acc").axes[0]
        colours = [line.get_color() for line in panel.lines]
        assert panel.get_legend() is None or len(set(colours)) == count


def test_a_parameter_some_runs_lack_is_drawn_for_the_runs_that_have_it():
    # A define-by-run space draws momentum for SGD only, nesterov as a flag or not at all.
    names = ["a", "b", "c"]
    histories = {name: history([1.0, 2.0]) for name in names}
    runs = pd.DataFrame(
        {"legend": names, "optimizer.momentum": [0.8627761218598525, np.nan, 0.3982],
         "optimizer.nesterov": [True, np.nan, False], "lr": [0.1, 0.2, 0.3],
         "val_acc": [0.5, 0.6, 0.7]}, index=names,
    )  # fmt: skip
    figure = summary_figure(runs, histories, list(runs.columns[1:4]), "val_acc")
    momentum, nesterov = figure.axes[2:4]
    assert len(momentum.collections[0].get_offsets()) == 2  # the runs that have it
    assert momentum.get_xscale() == "linear" and not momentum.get_xticklabels()[0].get_rotation()
    assert len(nesterov.collections[0].get_offsets()) == 2
    assert [t.get_text() for t in nesterov.get_xticklabels()] == ["false", "true"]
    parallel = figure.axes[-2]  # then its colour bar
    labels = {text.get_text() for text in parallel.texts}
    assert {"0.8628", "0.3982"} <= labels and "0.8627761218598525" not in labels
    assert {"false", "true", "absent"} <= labels
