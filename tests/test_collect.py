"""Collecting run folders: `mlp-sweep collect` and `mlp-sweep compare` on real sweeps."""

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_collect_takes_one_sweeps_folder_and_writes_nothing_elsewhere(sweeps, tmp_path, capsys):
    """A run's folder, or a folder holding several sweeps, has no summary of its own:
    collect refuses it in one line (compare ranks them), and writes nothing there."""
    root = tmp_path / "outputs"
    for name in ("slow", "fast"):
        shutil.copytree(sweeps[name], root / name)
    before = sorted(p for p in root.rglob("*"))
    for folder, says in ((root / "slow" / "0", "is a run's folder"),
                         (root, "holds the sweeps fast, slow")):  # fmt: skip
        assert cli.main(["collect", str(folder)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: {folder} {says}") and "mlp-sweep compare" in line
    assert sorted(p for p in root.rglob("*")) == before


def test_collect_refuses_a_folder_of_studies_or_of_single_runs(tmp_path, capsys):
    for study in ("s1", "s2"):
        search = ["hparams_search=optuna", f"hydra.sweeper.study_name={study}"]
        assert (
            run_in_process(*search, "hydra.sweeper.n_trials=1", "epochs=1", cwd=tmp_path).code == 0
        )
    for run in ("a", "b"):
        assert run_in_process("epochs=1", f"hydra.run.dir=runs/{run}", cwd=tmp_path).code == 0
    for folder, says in ((tmp_path / "outputs" / "optuna", "holds the studies s1, s2"),
                         (tmp_path / "runs", "holds runs of no sweep")):  # fmt: skip
        assert cli.main(["collect", str(folder)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: {folder} {says}: ") and "mlp-sweep compare" in line
        assert not list(folder.glob("summary*"))
    study = tmp_path / "outputs" / "optuna" / "s1"  # a study's own folder is one sweep's
    assert cli.main(["collect", str(study)]) == 0 and (study / "summary.md").is_file()


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
    assert "1 run (1 complete)" in capsys.readouterr().out


def test_missing_or_corrupt_metrics_are_listed_as_incomplete_with_a_warning(
    sweeps, tmp_path, caplog
):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "broken")
    (copy / "0" / "metrics.json").write_text('{"status": "compl')  # cut off mid-write
    (copy / "1" / "metrics.json").unlink()  # a job killed before its first write
    c, _ = collect.write_summary(copy)
    assert sorted(c.runs["status"]) == ["incomplete", "incomplete"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(copy / "0") in warned and str(copy / "1") in warned
    assert len(pd.read_csv(copy / "summary.csv")) == 2


def test_epochs_run_stays_a_whole_number_beside_an_incomplete_run(sweeps, tmp_path):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "one_broken")
    (copy / "0" / "metrics.json").write_text('{"status": "compl')
    collect.write_summary(copy)
    epochs_run = pd.read_csv(copy / "summary.csv", dtype=str)["epochs_run"]
    assert epochs_run.isna().sum() == 1 and epochs_run.dropna().str.fullmatch(r"\d+").all()


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


def test_compare_takes_the_default_outputs_folder_of_runs_and_sweeps(tmp_path, capsys):
    assert run_in_process("epochs=1", "hidden=20", cwd=tmp_path).code == 0
    assert run_in_process("-m", "hidden=20,30", "epochs=1", cwd=tmp_path).code == 0
    assert cli.main(["compare", str(tmp_path / "outputs")]) == 0
    assert "3 runs (3 complete)" in capsys.readouterr().out


def test_runs_sort_naturally_by_folder_name(tmp_path):
    for name in ("runs/b", "sweeps/s/10", "sweeps/s/2", "runs/a"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "metrics.json").write_text("{}")
    found = [p.relative_to(tmp_path).as_posix() for p in collect.run_dirs(tmp_path)]
    assert found == ["runs/a", "runs/b", "sweeps/s/2", "sweeps/s/10"]


def test_the_same_folder_given_twice_is_a_one_line_error(sweeps, capsys):
    assert cli.main(["compare", str(sweeps["slow"]), str(sweeps["slow"])]) == 2
    assert capsys.readouterr().err.strip().endswith("is given twice; give each folder once")
    assert cli.main(["compare", str(sweeps["slow"]), str(sweeps["slow"] / "0")]) == 2
    assert "lies inside" in capsys.readouterr().err


def test_sort_seconds_puts_the_fastest_first(sweeps):
    c = collect.collect([sweeps["slow"], sweeps["fast"]])
    assert collect.ranked(c, sort="seconds")["seconds"].is_monotonic_increasing


def test_top_must_be_at_least_one(sweeps, capsys):
    with pytest.raises(SystemExit):
        cli.main(["compare", str(sweeps["slow"]), "--top", "-1"])
    assert "'-1' is invalid: must be a whole number >= 1" in capsys.readouterr().err


def test_sort_by_hidden_mixing_one_and_several_layers(sweeps, tmp_path):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "mixed")
    path = copy / "1" / "metrics.json"
    m = json.loads(path.read_text())
    m["params"]["hidden"] = [100, 50]
    path.write_text(json.dumps(m))
    table = collect.ranked(collect.collect([copy]), sort="hidden")
    assert table["hidden"].tolist() == ["[20]", "[100, 50]"]  # as lists once depths differ


def _with(path: Path, changes: dict[tuple[str, ...], object]) -> None:
    """Change keys of a run's metrics.json, each named by its path of keys."""
    m = json.loads(path.read_text())
    for (*parents, key), value in changes.items():
        node = m
        for parent in parents:
            node = node[parent]
        node[key] = value
    path.write_text(json.dumps(m))


def test_a_nan_metric_never_ranks_first(sweeps, tmp_path):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "nan")
    for job, seed in (("0", 2), ("1", 2)):
        _with(copy / job / "metrics.json", {("params", "seed"): seed})
        shutil.copytree(copy / job, copy / f"{job}b")  # the same setting, another seed
        _with(copy / f"{job}b" / "metrics.json", {("params", "seed"): 3})
    for job in ("0", "0b"):  # hidden=20 lost its validation loss
        _with(copy / job / "metrics.json", {("final", "val_loss"): math.nan})
    c = collect.collect([copy], metric="val_loss")
    assert not math.isnan(collect.ranked(c)["val_loss"].iloc[0])
    assert math.isnan(collect.ranked(c)["val_loss"].iloc[-1])
    groups = collect.seed_groups(c)
    assert groups["hidden"].tolist() == [40, 20] and groups["val_loss"].iloc[1] == "nan"


def test_losses_of_both_variants_are_never_ranked_against_each_other(sweeps, tmp_path, capsys):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "variants")
    _with(copy / "1" / "metrics.json", {("params", "model.name"): "sigmoid_mse"})
    assert cli.main(["compare", str(copy), "--metric", "val_loss"]) == 2
    err = capsys.readouterr().err
    assert "would rank the losses of sigmoid_mse and softmax_ce" in err
    assert len(err.strip().splitlines()) == 1
    for job in ("0", "1"):  # a loss objective, not asked for: ranked by accuracy instead
        _with(copy / job / "metrics.json", {("objective", "metric"): "val_loss"})
    assert collect.collect([copy]).metric == "val_acc"


# Collection over damaged, partial and mixed metrics.json files, as a property.
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(1, 400), max_size=3),
    st.dictionaries(st.sampled_from(["metric", "total", "number", "x"]), st.integers(), max_size=2),
)
_PLACES = [
    ("schema_version",), ("status",), ("error",), ("objective",), ("objective", "metric"),
    ("objective", "value"), ("params",), ("params", "hidden"), ("params", "seed"),
    ("params", "model.name"), ("final",), ("final", "val_acc"), ("final", "val_loss"),
    ("history",), ("epochs_run",), ("seconds",), ("seconds", "total"), ("trial",),
    ("choices",), ("config",),
]  # fmt: skip
_DAMAGE = st.lists(
    st.tuples(st.sampled_from(_PLACES), st.one_of(st.just("<drop>"), _VALUES)), max_size=3
)


def _damaged(record: dict, damage: list) -> dict:
    m = json.loads(json.dumps(record))
    for (*parents, key), value in damage:
        node = m
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if value == "<drop>":
            node.pop(key, None)
        else:
            node[key] = value
    return m


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    damages=st.lists(_DAMAGE, min_size=1, max_size=4),
    metric=st.sampled_from([None, "val_loss", "val_acc"]),
)
def test_collection_never_crashes_on_damaged_records_and_never_ranks_nan_first(
    sweeps, tmp_path_factory, damages, metric
):
    folder = tmp_path_factory.mktemp("damaged")
    record = json.loads((sweeps["slow"] / "0" / "metrics.json").read_text())
    shutil.copytree(sweeps["slow"] / "1", folder / "intact")
    for n, damage in enumerate(damages):
        (folder / str(n)).mkdir()
        (folder / str(n) / "metrics.json").write_text(json.dumps(_damaged(record, damage)))
    try:
        c = collect.collect([folder], metric)
    except ValueError as err:  # only an explicit loss across both variants is refused
        assert metric is not None and "not comparable" in str(err)
        return
    assert len(c.runs) == len(damages) + 1
    collect.to_markdown(c, "damaged")
    for column in ("seconds", "epochs_run", *c.params):
        collect.ranked(c, sort=column)
    known = collect.ranked(c)[c.metric].astype(float).notna().tolist()
    assert known == sorted(known, reverse=True)  # every NaN after every number
    winner = collect.best(c)
    assert winner is None or math.isfinite(winner[c.metric])


def test_compare_never_writes_its_summary_over_a_sweeps_own(sweeps, capsys):
    kept = (sweeps["slow"] / "summary.csv").read_bytes()
    args = ["compare", str(sweeps["slow"]), str(sweeps["fast"]), "--out", str(sweeps["slow"])]
    assert cli.main(args) == 2
    assert "holds runs, whose summary files are their own" in capsys.readouterr().err
    assert (sweeps["slow"] / "summary.csv").read_bytes() == kept


def test_one_unreadable_run_leaves_the_swept_parameters_as_they_are(sweeps, tmp_path):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "one_broken")
    shutil.copytree(copy / "1", copy / "2")
    (copy / "2" / "metrics.json").write_text("{")
    c, _ = collect.write_summary(copy)
    assert c.params == ["hidden"]
    table = (copy / "summary.md").read_text()
    assert "differ only in seed" not in table
    assert re.search(r"\|\s+20 \|", table) and "20.0" not in table  # integers stay so
    assert pd.read_csv(copy / "summary.csv")["hidden"].tolist()[:2] == [20, 40]


def test_a_runs_setting_leaves_out_the_parameters_it_has_not():
    adamw = pd.Series({"optimizer": "adamw", "lr": 0.003, "optimizer.momentum": math.nan})
    assert collect.setting(adamw, ["optimizer", "lr", "optimizer.momentum"]) == (
        "optimizer=adamw, lr=0.003"
    )


def test_a_null_setting_reads_null_and_one_a_run_has_not_is_blank(sweeps, tmp_path):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "null")
    for name in ("summary.csv", "summary.md", "summary.png"):
        (copy / name).unlink()
    # hidden=20 with PyTorch's own init (init_std=null), hidden=40 an Adam run: no momentum
    _with(copy / "0" / "metrics.json", {("params", "init_std"): None})
    m = json.loads((copy / "1" / "metrics.json").read_text())
    m["params"].pop("optimizer.momentum")
    m["params"]["init_std"] = 0.01
    (copy / "1" / "metrics.json").write_text(json.dumps(m))
    assert cli.main(["collect", str(copy)]) == 0
    table = (copy / "summary.md").read_text()
    header, _, *rows = [line for line in table.splitlines() if line.startswith("|")]
    cells = [dict(zip(_cells(header), _cells(row))) for row in rows]
    by_hidden = {row["hidden"]: row for row in cells}
    assert by_hidden["20"]["init_std"] == "null" and by_hidden["40"]["init_std"] == "0.01"
    assert by_hidden["40"]["optimizer.momentum"] == ""  # not "nan": it has none
    assert "nan" not in table
    c = collect.collect([copy])
    assert "init_std=null" in collect.setting(c.runs.iloc[0], c.params)


def test_seed_groups_show_a_null_setting_and_numbers_as_the_ranked_table_does(sweeps, tmp_path):
    copy = shutil.copytree(sweeps["slow"], tmp_path / "seeds")
    for job in ("0", "1"):  # each setting under two seeds
        _with(copy / job / "metrics.json", {("params", "seed"): 2})
        shutil.copytree(copy / job, copy / f"{job}b")
        _with(copy / f"{job}b" / "metrics.json", {("params", "seed"): 3})
    for job in ("0", "0b"):  # hidden=20: PyTorch's own init
        _with(copy / job / "metrics.json", {("params", "init_std"): None})
    for job in ("1", "1b"):
        _with(copy / job / "metrics.json", {("params", "init_std"): 0.09114299646101914})
    text = collect.to_markdown(collect.collect([copy]), "seeds")
    ranked, groups = text.split("## Runs that differ only in seed")
    for table in (ranked, groups):
        header, _, *rows = [line for line in table.splitlines() if line.startswith("|")]
        shown = {row["hidden"]: row["init_std"] for row in map(_row(header), rows)}
        assert shown == {"20": "null", "40": "0.09114"}, table


def _row(header: str):
    return lambda line: dict(zip(_cells(header), _cells(line)))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_compare_out_onto_a_file_is_a_one_line_error(sweeps, tmp_path, capsys, where):
    (tmp_path / "a_file").write_text("")
    assert cli.main(["compare", str(sweeps["slow"]), "--out", str(tmp_path / where)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --out ") and "is not a folder" in line


def test_a_count_is_written_whole_beside_a_run_without_one():
    counts = pd.Series([1033510, math.nan], dtype=object)
    table = pd.DataFrame({"run": ["0", "1"], "n_params": counts, "val_acc": [0.91234, math.nan]})
    text = collect._markdown(table, [])
    assert "1033510" in text and "e+06" not in text and "0.9123" in text
