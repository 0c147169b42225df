"""Collecting run folders: `mlp-sweep collect` and `mlp-sweep compare` on real sweeps."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_in_process

from mlp_sweep import cli, collect


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """Two real sweeps over hidden, one with lr=0.1 and one with lr=0.5."""
    root = tmp_path_factory.mktemp("sweeps")
    for name, lr in (("slow", 0.1), ("fast", 0.5)):
        args = ["-m", "hidden=20,40", f"lr={lr}", "epochs=2", f"hydra.sweep.dir={name}"]
        assert run_in_process(*args, cwd=root).code == 0
    return {name: root / name for name in ("slow", "fast")}


def test_collect_rebuilds_the_summary_the_sweep_wrote(sweeps, tmp_path, capsys):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "slow")
    written = pd.read_csv(copy / "summary.csv")
    for name in ("summary.csv", "summary.md", "summary.png"):
        (copy / name).unlink()
    assert cli.main(["collect", str(copy)]) == 0
    rebuilt = pd.read_csv(copy / "summary.csv")
    pd.testing.assert_frame_equal(rebuilt.drop(columns="path"), written.drop(columns="path"))
    assert rebuilt["path"].tolist() == [str(copy / "0"), str(copy / "1")]
    assert (copy / "summary.png").is_file()
    assert "Best: run" in capsys.readouterr().out


def test_compare_puts_sweeps_side_by_side(sweeps, capsys):
    assert cli.main(["compare", str(sweeps["slow"]), str(sweeps["fast"])]) == 0
    out = capsys.readouterr().out
    side = out.split("side by side")[1].split("\n\n")[1]
    header, _, *rows = side.splitlines()
    assert "fast" in header and "slow" in header and len(rows) == 2  # hidden=20, hidden=40
    c = collect.collect([sweeps["slow"], sweeps["fast"]])
    assert len(c.runs) == 4 and {"hidden", "lr"} <= set(c.params)


def test_compare_ranks_by_the_chosen_metric_and_direction(sweeps, capsys):
    assert (
        cli.main(["compare", str(sweeps["slow"]), str(sweeps["fast"]), "--metric", "val_loss"]) == 0
    )
    c = collect.collect([sweeps["slow"], sweeps["fast"]], "val_loss")
    table = collect.ranked(c)
    assert table["val_loss"].is_monotonic_increasing  # a loss: lowest first
    assert collect.ranked(collect.collect([sweeps["slow"]]))["val_acc"].is_monotonic_decreasing


def test_compare_writes_summary_files_where_asked(sweeps, tmp_path):
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(sweeps["slow"]), str(sweeps["fast"]), "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "summary.csv")) == 4
    assert (out / "summary.png").is_file() and (out / "summary.md").is_file()


def test_a_run_folder_alone_can_be_compared(sweeps, capsys):
    assert cli.main(["compare", str(sweeps["slow"] / "0")]) == 0
    assert "1 runs (1 complete)" in capsys.readouterr().out


def test_missing_or_corrupt_metrics_are_listed_as_incomplete_with_a_warning(
    sweeps, tmp_path, caplog
):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "broken")
    (copy / "0" / "metrics.json").write_text('{"status": "compl')  # cut off mid-write
    (copy / "1" / "metrics.json").unlink()  # a job killed before its first write
    c = collect.write_summary(copy)
    assert sorted(c.runs["status"]) == ["incomplete", "incomplete"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(copy / "0") in warned and str(copy / "1") in warned
    assert len(pd.read_csv(copy / "summary.csv")) == 2


def test_an_interrupted_run_shows_its_last_epoch(sweeps, tmp_path):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "interrupted")
    path = copy / "1" / "metrics.json"
    m = json.loads(path.read_text())
    m.update(status="interrupted", final={}, epochs_run=1, history=m["history"][:1])
    path.write_text(json.dumps(m))
    c = collect.collect([copy])
    run = c.runs.set_index("run").loc["1"]
    assert run["status"] == "interrupted" and run["epochs_run"] == 1
    assert run["val_acc"] == m["history"][0]["val_acc"]
    assert collect.best(c)["run"] == "0"  # only complete runs can be best


def test_unknown_sort_column_is_a_one_line_error(sweeps, capsys):
    assert cli.main(["compare", str(sweeps["slow"]), "--sort", "colour"]) == 2
    assert "--sort 'colour' is not a column; allowed:" in capsys.readouterr().err


def test_a_missing_folder_is_an_error(tmp_path, capsys):
    assert cli.main(["compare", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
