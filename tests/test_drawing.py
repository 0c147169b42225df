"""Figures drawn off a sweep's critical path, by one process of their own."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from test_faults import start

from mlp_sweep import cli, drawing
from mlp_sweep.callbacks import CollectSweep
from mlp_sweep.records import EPOCH_FIELDS, STUDY_PLOTS

STUDY = "optuna-mnist_5k-val_acc"  # hparams_search=optuna's study, on the default data

PNG = b"\x89PNG"


def _curves_task(path: Path, epochs: int = 2) -> str:
    history = [
        {"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "val_loss": None, "val_acc": None}
        for e in range(1, epochs + 1)
    ]
    columns = {key: [h[key] for h in history] for key in history[0]}
    return json.dumps({"curves": columns, "path": str(path), "title": "a run"})


def test_a_figure_that_cannot_be_drawn_is_named_and_the_others_are_drawn(tmp_path, caplog):
    missing = tmp_path / "no such folder" / "curves.png"
    good = tmp_path / "curves.png"
    with caplog.at_level(logging.WARNING):
        drawing.serve([_curves_task(missing), _curves_task(good)])
    assert str(missing) in caplog.text
    assert good.read_bytes()[:4] == PNG  # a run without validation metrics draws its train lines


def test_the_figures_handed_over_last_are_all_drawn_and_a_failure_among_them_is_named(tmp_path):
    """The figures left when the sweep has handed over its last task are shared with a second
    process (a stacked group's members end together); each is drawn, or named if it cannot
    be (the fork's warnings too), and the process ends as usual."""
    good = [tmp_path / f"{i}.png" for i in range(5)]
    missing = tmp_path / "no such folder" / "curves.png"
    tasks = [_curves_task(path) for path in (*good[:3], missing, *good[3:])]
    done = subprocess.run(
        [sys.executable, "-c", "from mlp_sweep import drawing; drawing.serve()"],
        input="\n".join(tasks) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert f"warning: {missing} could not be drawn" in done.stderr
    assert [path.read_bytes()[:4] for path in good] == [PNG] * len(good)


def test_a_summary_lost_with_the_figures_process_is_written_by_the_sweep(tmp_path, run_app, capsys):
    """The figures' process takes the sweep's summary and dies before it writes it: the
    sweep writes it itself, and prints its table."""
    assert run_app("-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s").code == 0
    sweep = tmp_path / "s"
    for name in ("summary.csv", "summary.md", "summary.png"):
        (sweep / name).unlink()
    leftover = sweep / ".summary.csv.k1ll3d.tmp"  # what a writer killed mid-write leaves
    leftover.write_text("run,")
    capsys.readouterr()
    drawing._drawer.start()  # the figures' process of a sweep, which
    pid = drawing._drawer.process.pid
    os.kill(pid, signal.SIGSTOP)  # takes the summary but never writes it:
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()  # killed as the sweep waits
    end = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    CollectSweep().on_multirun_end(config=end)
    for name in ("summary.csv", "summary.md", "summary.png"):
        assert (sweep / name).is_file(), name
    assert (sweep / "summary.md").read_text() in capsys.readouterr().out
    assert not leftover.exists()


def test_what_a_figures_process_that_died_mid_sweep_left_half_written_is_removed(tmp_path, run_app):
    """The figures' process dies as it writes a run's curves.png, long before the sweep
    ends: the sweep, which then draws the rest itself, removes what it left."""
    assert run_app("-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s").code == 0
    sweep = tmp_path / "s"
    leftover = sweep / "0" / ".curves.png.k1ll3d.tmp"
    leftover.write_bytes(b"")
    drawing._drawer.start()
    drawing._drawer.process.kill()
    drawing._drawer.process.wait()  # dead: the summary cannot be handed over
    end = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    CollectSweep().on_multirun_end(config=end)
    assert (sweep / "summary.png").is_file() and not leftover.exists()


def test_a_studys_figures_lost_with_the_figures_process_are_drawn_by_the_sweep(tmp_path, run_app):
    """The figures' process takes a search's study figures and dies before it draws them:
    the sweep draws them itself, from the study's database, when it ends."""
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=1", "hidden=8"]
    assert run_app(*search).code == 0
    folder = tmp_path / "outputs" / "optuna" / STUDY
    for name in STUDY_PLOTS:
        (folder / name).unlink()
    storage = f"sqlite:///{tmp_path}/outputs/optuna/{STUDY}.db"
    study = optuna.load_study(study_name=STUDY, storage=storage)
    drawing._drawer.start()
    pid = drawing._drawer.process.pid
    os.kill(pid, signal.SIGSTOP)
    drawing.study_figures(study, storage, folder, ["val_acc"])  # handed over, never drawn
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()  # killed as the sweep waits
    end = OmegaConf.create({"hydra": {"sweep": {"dir": str(folder)}}})
    CollectSweep().on_multirun_end(config=end)
    assert [(folder / name).read_bytes()[:4] for name in STUDY_PLOTS] == [PNG] * len(STUDY_PLOTS)


def _serve() -> subprocess.Popen[str]:
    """A figures' process, as a sweep starts it, fed by the caller."""
    code = "from mlp_sweep import drawing; drawing.serve()"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the fork in /proc")
def test_a_studys_figures_lost_with_the_fork_drawing_them_are_drawn_again(tmp_path, run_app):
    """The figures' process draws a study's figures in a fork of itself; the fork is killed
    (mid-write, say): the process draws them itself, over what the fork left, and ends well."""
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=1", "hidden=8"]
    assert run_app(*search).code == 0
    folder = tmp_path / "outputs" / "optuna" / STUDY
    for name in STUDY_PLOTS:
        (folder / name).unlink()
    leftover = folder / ".optuna_history.png.k1ll3d.tmp"  # a fork killed mid-write leaves it
    leftover.write_bytes(PNG)
    storage = f"sqlite:///{tmp_path}/outputs/optuna/{STUDY}.db"
    task = {"study": STUDY, "storage": storage, "folder": str(folder), "objectives": ["val_acc"]}
    proc = _serve()
    proc.stdin.write(json.dumps(task) + "\n")
    proc.stdin.flush()
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not children.read_text().split():
        time.sleep(0.001)
    os.kill(int(children.read_text().split()[0]), signal.SIGKILL)
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert [(folder / name).read_bytes()[:4] for name in STUDY_PLOTS] == [PNG] * len(STUDY_PLOTS)
    assert not leftover.exists()


def test_optunas_notes_on_a_study_it_cannot_plot_are_left_to_the_search(tmp_path):
    # The search says the study has no complete trial; Optuna's own notes, in its own format
    # and after the command may have ended, only repeat it.
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="failing", storage=storage)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    task = {"study": "failing", "storage": storage, "folder": str(tmp_path), "objectives": []}
    proc = _serve()
    _, said = proc.communicate(json.dumps(task) + "\n", timeout=120)
    assert proc.returncode == 0
    assert said == ""


def test_a_study_whose_figures_cannot_be_drawn_is_named_and_the_summary_is_written(
    tmp_path, run_app
):
    assert run_app("-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s").code == 0
    storage = f"sqlite:///{tmp_path}/study.db"
    optuna.create_study(study_name="other", storage=storage)
    summary = tmp_path / "s" / "summary.md"
    summary.unlink()
    nowhere = {"study": "nowhere", "storage": storage, "folder": str(tmp_path / "s")}
    end = {"summary": str(tmp_path / "s"), "metric": None, "live": False}
    done = subprocess.run(
        [sys.executable, "-c", "from mlp_sweep import drawing; drawing.serve()"],
        input=f"{json.dumps({**nowhere, 'objectives': []})}\n{json.dumps(end)}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: the figures of study nowhere could not be drawn" in done.stderr
    assert summary.is_file()


@pytest.mark.parametrize("blocked", ["summary.png", "summary.csv"])
def test_a_summary_file_that_cannot_be_written_is_named_once(
    tmp_path, run_app, run_script, blocked
):
    """A summary file the sweep cannot write (here a folder stands in its place) gets one
    warning, naming it, when the sweep ends (not one per rewrite as jobs end); the tables
    that could be written are, and their table is printed."""
    assert run_app("-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s").code == 0
    sweep = tmp_path / "s"
    (sweep / blocked).unlink()
    (sweep / blocked / "x").mkdir(parents=True)
    for name in ("summary.csv", "summary.md", "summary.png"):  # written again, or not
        if name != blocked:
            (sweep / name).unlink()
    result = run_script("-m", "hidden=20,30,40", "epochs=1", "hydra.sweep.dir=s")  # one more
    assert result.code == 0, result.err
    said = [line for line in (result.out + result.err).splitlines() if "could not be" in line]
    assert len(said) == 1 and blocked in said[0], said
    if blocked == "summary.png":
        assert (sweep / "summary.md").read_text() in result.out
        assert "40" in (sweep / "summary.csv").read_text()
    else:
        assert not (sweep / "summary.md").exists()


def test_runs_that_completed_keep_their_curves_when_the_sweep_is_killed(tmp_path):
    """A kill -9 of a sweep just after a run completed: the figure it handed over is drawn."""
    proc = start("-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s", cwd=tmp_path)
    first = tmp_path / "s" / "0" / "metrics.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(first.read_text())["status"] == "complete":
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)  # its figures' process holds stderr until it is done
    assert json.loads(first.read_text())["status"] == "complete"
    assert (first.parent / "curves.png").read_bytes()[:4] == PNG


@pytest.mark.parametrize(
    "subdir, run",
    [([], "0"), (["hydra.sweep.subdir=${model.name}/${hidden}"], "softmax_ce/20")],
    ids=["flat", "nested"],
)
def test_a_curves_png_lost_with_the_drawing_process_is_drawn_again(
    tmp_path, run_script, subdir, run
):
    """A run marked complete whose figure was still with the drawing process when both were
    killed: the same command run again draws it (the run is kept, not trained again), and so
    does `mlp-sweep collect`; in a run folder of the sweep's folder or below it."""
    sweep = ["-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s", *subdir]
    assert run_script(*sweep).code == 0
    lost = tmp_path / "s" / run / "curves.png"
    kept = (tmp_path / "s" / run / "metrics.json").read_text()
    lost.unlink()  # as a kill of the sweep and its drawing process leaves it
    leftover = lost.parent / ".curves.png.k1ll3d.tmp"  # and the figure it was writing
    leftover.write_bytes(b"")
    os.utime(leftover, (time.time() - 60, time.time() - 60))

    again = run_script(*sweep)
    assert again.code == 0, again.err
    assert lost.read_bytes()[:4] == PNG
    assert not leftover.exists()  # the new session's figures' process ended well: it is old
    assert (tmp_path / "s" / run / "metrics.json").read_text() == kept  # not trained again

    lost.unlink()
    assert cli.main(["collect", str(tmp_path / "s")]) == 0
    assert lost.read_bytes()[:4] == PNG


def test_a_sweep_refused_for_its_folder_draws_nothing_there(tmp_path, run_script):
    """A figure missing from a sweep's folder is the sweep's to draw: a second sweep refused
    for that folder (other settings) changes nothing in it."""
    assert run_script("-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s").code == 0
    missing = tmp_path / "s" / "1" / "curves.png"
    missing.unlink()
    refused = run_script("-m", "hidden=20,30", "epochs=1", "lr=0.5", "hydra.sweep.dir=s")
    assert refused.code == 2 and "holds a complete run with other settings" in refused.err
    assert not missing.exists() and "curves.png" not in refused.out + refused.err


def test_the_figures_process_imports_the_package_of_its_sweep_not_the_working_folders(
    tmp_path, run_script
):
    # A sweep started in a folder that holds another mlp_sweep (a checkout of another version).
    (tmp_path / "mlp_sweep").mkdir()
    marker = tmp_path / "the-working-folders-package-was-imported"
    (tmp_path / "mlp_sweep" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    result = run_script("-m", "hidden=8,16", "epochs=1")
    assert result.code == 0, result.err
    assert not marker.exists()
    assert len(list(tmp_path.glob("outputs/sweeps/*/*/curves.png"))) == 2


def test_a_long_title_of_a_runs_curves_stays_inside_its_figure(tmp_path):
    """The run's folder and its overrides, however many: the title is wrapped, not cut at
    the figure's edges."""
    from matplotlib.backends.backend_agg import RendererAgg

    from mlp_sweep import plots

    overrides = [f"optimizer.weight_decay_{n}=0.0002642146388997605" for n in range(8)]
    name = drawing.title(tmp_path / "run-17", overrides)
    history = {key: [1.0] for key in EPOCH_FIELDS}
    plots.plot_curves(history, tmp_path / "c.png", name)
    fig, _ = plots._curves_figure()
    width, height = fig.bbox.width, fig.bbox.height
    box = fig._suptitle.get_window_extent(RendererAgg(width, height, fig.dpi))
    assert box.x0 >= 0 and box.x1 <= width and box.y1 <= height
    assert fig._suptitle.get_text().startswith("run-17: optimizer.weight_decay_0=")
