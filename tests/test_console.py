"""What a run and a sweep print, and the summary a running sweep keeps up to date."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlp_sweep import console
from mlp_sweep.console import SweepWatch
from mlp_sweep.sweepers import GridSweeper


def test_a_three_job_grid_of_20_epochs_prints_at_most_30_lines(run_script, tmp_path):
    result = run_script("-m", "hidden=20,40,60", "epochs=20")
    assert result.code == 0, result.err
    lines = (result.out + result.err).splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("# Sweep"))
    before = lines[:table]
    assert len(before) <= 30, "\n".join(before)
    job_lines = [line for line in before if line.startswith("job ")]
    assert [line.split()[:3] for line in job_lines] == [
        ["job", "0", "hidden=20"],
        ["job", "1", "hidden=40"],
        ["job", "2", "hidden=60"],
    ]
    assert all("val_acc 0." in line and "complete" in line for line in job_lines)
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    log = (sweep / "1" / "mlp_sweep.log").read_text()
    assert log.count("epoch ") == 20  # each job's epochs are in its log file


def test_a_single_run_prints_every_epoch(run_app):
    result = run_app("epochs=2")
    assert result.code == 0, result.err
    assert "epoch 1/2" in result.out and "epoch 2/2" in result.out


def test_console_epochs_brings_a_sweeps_epoch_lines_back(run_app):
    quiet = run_app("-m", "hidden=20", "epochs=2")
    loud = run_app("-m", "hidden=20", "epochs=2", "console=epochs")
    assert quiet.code == loud.code == 0
    assert "epoch 2/2" not in quiet.out and "epoch 2/2" in loud.out


def test_a_failed_job_is_one_line_with_its_error(run_app):
    result = run_app("-m", "lr=1e38,0.1", "epochs=2")
    (line,) = [line for line in result.out.splitlines() if line.startswith("job 0")]
    assert "lr=1e+38" in line and "failed: training diverged: the loss became nan" in line


def test_a_jobs_line_spells_a_flag_as_a_config_writes_it():
    data = {"overrides": ["optimizer.nesterov=True", "hidden=[64,32]"], "status": "complete"}
    line = console.job_line(Path("0"), data, swept=["optimizer.nesterov", "hidden"])
    assert line.startswith("job 0  optimizer.nesterov=true hidden=[64,32]  complete")


def test_a_job_interrupted_before_its_first_record_is_interrupted_not_done(tmp_path, capsys):
    """Ctrl-C just as a job starts (its folder holds no metrics.json yet): the console says
    it was interrupted, and the bar does not count it as done."""
    config = OmegaConf.create(
        {
            "objective": "val_acc",
            "hydra": {
                "sweeper": {"_target_": "mlp_sweep.sweepers.GridSweeper"},
                "launcher": {"_target_": "mlp_sweep.stacked_launcher.StackedLauncher"},
                "overrides": {"task": ["hidden=20,40"]},
            },
        }
    )
    watch = SweepWatch(tmp_path, config)
    (tmp_path / "1").mkdir()
    watch.job_ended(tmp_path / "1", KeyboardInterrupt())
    assert watch.bar.n == 0
    watch.close()
    assert "job 1  interrupted" in capsys.readouterr().out


def test_a_bad_console_value_is_one_line(run_app):
    result = run_app("console=loud")
    assert result.code == 2
    assert result.err.strip() == "error: console='loud' is invalid: allowed: auto, epochs"


def test_summary_csv_is_written_when_the_first_job_finishes(tmp_path):
    # Job 0 trains 1 epoch, job 1 a long time: the summary must be there while job 1 runs
    # (stacked, the default: both train in one group, and job 0 is reported as it leaves).
    command = [sys.executable, str(REPO / "run.py"), "-m", "epochs=1,2000", "hidden=20"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        summary = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(tmp_path.glob("outputs/sweeps/*/summary.csv"))
            if found:
                summary = found[0]
                break
            time.sleep(0.2)
        assert summary is not None, "no summary.csv while the sweep ran"
        table = pd.read_csv(summary)
        still_running = proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()
    assert still_running
    first = json.loads((summary.parent / "0" / "metrics.json").read_text())
    row = table[table["run"] == 0].iloc[0]
    assert row["status"] == "complete" and row["val_acc"] == first["final"]["val_acc"]
    assert (table["status"] == "complete").sum() == 1
    assert not (summary.parent / "summary.png").exists()  # drawn when the sweep ends


@pytest.mark.parametrize(
    ("file", "text", "says"),
    [
        (
            "experiment/broken.yaml",
            "hidden: [1, 2\nlr: 0.1\n",
            "experiment/broken.yaml, line 2: did not find expected ',' or ']'",
        ),
        (
            "experiment/broken.yaml",
            "# @package _global_\ndefaults:\n  - override /model: nonexist\n",
            "experiment/broken.yaml, line 3: model=nonexist is invalid: allowed: "
            "sigmoid_mse, softmax_ce",
        ),
    ],
)
def test_a_broken_config_file_is_one_line_naming_file_and_line(run_app, tmp_path, file, text, says):
    path = tmp_path / "extra" / file
    path.parent.mkdir(parents=True)
    path.write_text(text)
    result = run_app("-cd", str(tmp_path / "extra"), "experiment=broken")
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path}/extra/") and says in line


@pytest.mark.parametrize(
    ("command", "total", "swept"),
    [
        (["lr=0.5,1.0,2.0"], 3, ["lr"]),  # the command line's sweep replaces the config's
        (["lr=0.5"], 1, []),  # and so does a single value
        (["hidden=8,16", "lr=0.5,1.0"], 4, ["lr", "hidden"]),
    ],
)
def test_the_bar_counts_the_jobs_of_a_key_swept_in_the_config_and_on_the_command_line(
    tmp_path, command, total, swept
):
    """Hydra's grid takes each key once, its last value winning: a key that the config's
    hydra.sweeper.params and the command line both sweep is one axis of the grid."""
    config = OmegaConf.create(
        {
            "objective": "val_acc",
            "hydra": {
                "sweeper": {"_target_": "mlp_sweep.sweepers.GridSweeper",
                            "params": {"lr": "0.1,0.2"}},
                "overrides": {"task": command},
            },
        }
    )  # fmt: skip
    assert console.planned(config) == (total, swept)


_KEYS = st.sampled_from(["lr", "hidden", "seed", "optimizer.momentum"])
_VALUES = st.lists(st.sampled_from(["1", "2", "3", "0.5"]), min_size=1, max_size=3, unique=True)


@given(
    params=st.dictionaries(_KEYS, _VALUES, max_size=3),
    command=st.lists(st.tuples(_KEYS, _VALUES), max_size=4),
)
def test_the_bar_plans_as_many_jobs_as_the_grid_sweeper_makes(params, command):
    as_text = {key: ",".join(values) for key, values in params.items()}
    task = [f"{key}={','.join(values)}" for key, values in command]
    config = OmegaConf.create(
        {"hydra": {"sweeper": {"params": as_text}, "overrides": {"task": task}}}
    )
    overrides = OverridesParser.create().parse_overrides(
        [*(f"{k}={v}" for k, v in as_text.items()), *task]
    )
    (jobs,) = GridSweeper.split_arguments(overrides, None)
    total, swept = console.planned(config)
    assert total == len(jobs)
    cells = {cell for job in jobs for cell in job}  # each "key=value" of any job
    keys = [cell.split("=")[0] for cell in cells]
    assert len(swept) == len(set(swept)) and set(swept) == {k for k in keys if keys.count(k) > 1}


def test_a_key_swept_in_the_config_and_on_the_command_line_is_one_setting_of_the_jobs_line(
    run_app,
):
    result = run_app("-m", "+hydra.sweeper.params={lr:'0.1,0.2'}", "lr=0.5,1.0", "epochs=1")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if line.startswith("job ")]
    assert [line.split("  ")[:2] for line in lines] == [["job 0", "lr=0.5"], ["job 1", "lr=1.0"]]


def test_a_grid_over_a_groups_options_shows_its_jobs(run_app):
    result = run_app("-m", "model=glob(*)", "epochs=1")
    assert result.code == 0, result.err
    assert "raised" not in result.err  # no callback lost the console
    lines = [line for line in result.out.splitlines() if line.startswith("job ")]
    assert [line.split("  ")[:2] for line in lines] == [
        ["job 0", "model=sigmoid_mse"],
        ["job 1", "model=softmax_ce"],
    ]


def test_a_sweep_with_several_objectives_shows_its_jobs(run_app):
    result = run_app("-m", "hidden=8,16", "objective=[val_acc,n_params]", "epochs=1")
    assert result.code == 0, result.err
    assert "on_multirun_start raised" not in result.err
    assert [line[:5] for line in result.out.splitlines() if line.startswith("job ")] == [
        "job 0",
        "job 1",
    ]


def test_a_sweep_whose_override_resolves_only_in_its_jobs_shows_its_jobs(run_app):
    # The master config holds hidden=100, where ${hidden.0} does not resolve; every job does.
    args = ["-m", "hidden=[64,32],[128,16]", "batch_size=${hidden.0}", "epochs=1"]
    result = run_app(*args)
    assert result.code == 0, result.err
    assert [line[:5] for line in result.out.splitlines() if line.startswith("job ")] == [
        "job 0",
        "job 1",
    ]


def _on_a_terminal(args: list[str], cwd, code: int = 0) -> str:
    """`python run.py *args` with stdout and stderr on a 150-column pseudo-terminal, as a
    person sees it: what it wrote, bar redraws included; it must end with exit status
    ``code``."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args], cwd=cwd, stdout=slave, stderr=slave
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=300) == code, out.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


def test_a_grid_refused_on_a_terminal_leaves_only_its_error_line(tmp_path):
    shown = _on_a_terminal(["-m", "lr=0.1,-1", "epochs=1"], tmp_path, code=2)
    # What stays on each line of the screen: the text after its last carriage return (the
    # terminal ends each line with \r\n).
    lines = shown.replace("\r\n", "\n").split("\n")
    screen = [line.rsplit("\r", 1)[-1].strip() for line in lines]
    assert [line for line in screen if line] == ["error: lr=-1.0 is invalid: must be a number > 0"]


def test_a_search_on_a_terminal_names_trials_and_ends_on_lines_of_its_own(tmp_path):
    shown = _on_a_terminal(
        ["hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=1"], tmp_path
    )
    assert "sweep:" in shown  # the bar is drawn
    for said in ("A new study created", "Best trial"):  # Optuna's message, the sweeper's
        line = shown[: shown.index(said)].replace("\r", "\n").rsplit("\n", 1)[-1]
        assert "sweep:" not in line and "|" not in line, line  # not written into the bar
    assert "(trial " in shown and "(job " not in shown  # the best so far, named as a trial
