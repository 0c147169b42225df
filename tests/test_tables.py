"""Your own data: a table (CSV, TSV, Parquet) or arrays (.npz), and scikit-learn's examples;
swept like MNIST, then the winner applied to new rows with `mlp-sweep predict`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from sklearn.datasets import load_breast_cancer, load_digits

from mlp_sweep import cli, data, group, records
from mlp_sweep.data import prepare
from mlp_sweep.errors import DataError

REPO = Path(__file__).resolve().parent.parent

DIGITS = ("data=table", "data.path=digits.csv", "data.target=target")
FAST = ("model.activation=relu", "lr=0.5", "epochs=3")


@pytest.fixture
def digits_csv(tmp_path: Path) -> Path:
    load_digits(as_frame=True).frame.to_csv(tmp_path / "digits.csv", index=False)
    return tmp_path / "digits.csv"


@pytest.fixture
def cancer_npz(tmp_path: Path) -> Path:
    bunch = load_breast_cancer()
    np.savez(tmp_path / "cancer.npz", X=bunch.data, y=bunch.target)
    return tmp_path / "cancer.npz"


def metrics(run: Path) -> dict:
    return json.loads((run / records.METRICS_FILE).read_text())


def refused(result, says: str) -> None:
    assert result.code == 2, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error: ") and says in line, line


def test_a_stacked_grid_over_a_digits_csv_reaches_0_9_and_predict_agrees_with_the_labels(
    run_app, tmp_path, digits_csv, capsys
):
    result = run_app("-m", *DIGITS, *FAST, "hidden=32,64", "hydra.sweep.dir=s")
    assert result.code == 0, result.err
    runs = [tmp_path / "s" / n for n in ("0", "1")]
    assert all(metrics(r)["stacked"]["members"] == 2 for r in runs)
    best = max(runs, key=lambda r: metrics(r)["final"]["val_acc"])
    assert metrics(best)["final"]["val_acc"] >= 0.9
    assert metrics(runs[0])["final"]["n_params"] == 64 * 32 + 32 + 32 * 10 + 10  # 64 inputs
    out = tmp_path / "predictions.csv"
    assert cli.main(["predict", str(best), str(digits_csv), "--out", str(out)]) == 0
    predicted = pd.read_csv(out)
    labels = pd.read_csv(digits_csv)["target"]
    assert list(predicted.columns) == ["predicted", *(f"p_{d}" for d in range(10))]
    assert np.allclose(predicted.filter(like="p_").sum(axis=1), 1, atol=1e-4)
    assert (predicted["predicted"] == labels).mean() >= 0.9


def test_a_breast_cancer_npz_reaches_0_9(run_app, tmp_path, cancer_npz):
    result = run_app("data=arrays", "data.path=cancer.npz", *FAST, "hydra.run.dir=r")
    assert result.code == 0, result.err
    assert metrics(tmp_path / "r")["final"]["val_acc"] >= 0.9


def test_string_labels_come_back_as_themselves_from_predict(run_app, tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    frame = pd.DataFrame({"a": x[:, 0], "colour": rng.choice(["red", "blue"], 200)})
    frame["kind"] = np.where(x[:, 0] > 0, "big", "small")
    frame.to_csv(tmp_path / "t.csv", index=False)
    args = ("data=table", "data.path=t.csv", "data.target=kind", "hydra.run.dir=r")
    assert run_app(*args, *FAST).code == 0
    saved = json.loads((tmp_path / "r" / records.PREPROCESS_FILE).read_text())
    assert saved["classes"] == ["big", "small"]
    assert saved["categories"] == {"colour": ["blue", "red"]}
    assert cli.main(["predict", str(tmp_path / "r"), str(tmp_path / "t.csv")]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "predicted,p_big,p_small" and len(shown) == 201


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ({"a": [1.0], "colour": ["red"]}, "lacks the feature column 'x'"),
        ({"a": [1.0], "x": [0.5], "colour": ["green"]}, "category 'green', which the run never"),
    ],
)
def test_predict_names_a_missing_column_or_an_unseen_category_and_writes_nothing(
    run_app, tmp_path, capsys, rows, says
):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "x": rng.normal(size=60)})
    frame["colour"], frame["y"] = ["red", "blue"] * 30, [0, 1, 2] * 20
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert (
        run_app(
            "data=table", "data.path=t.csv", "data.target=y", "epochs=1", "hydra.run.dir=r"
        ).code
        == 0
    )
    pd.DataFrame(rows).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "p.csv"
    assert (
        cli.main(["predict", str(tmp_path / "r"), str(tmp_path / "new.csv"), "--out", str(out)])
        == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert says in line
    assert not out.exists()


def _table(tmp_path: Path, frame: pd.DataFrame, name: str = "t.csv") -> str:
    frame.to_csv(tmp_path / name, index=False)
    return f"data.path={name}"


def _frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(n, dtype=float), "y": [0, 1] * (n // 2)})


@pytest.mark.parametrize(
    ("make", "args", "says"),
    [
        (
            None,
            ("data=table", "data.path=nope.csv", "data.target=y"),
            "data.path=nope.csv: no such",
        ),
        (
            "garbage.parquet",
            ("data=table", "data.path=garbage.parquet", "data.target=y"),
            "cannot be read as PARQUET",
        ),
        ("t.txt", ("data=table", "data.path=t.txt", "data.target=y"), "allowed: .csv"),
        (
            "t.csv",
            ("data=table", "data.path=t.csv", "data.target=label"),
            "data.target='label' is not a column",
        ),
        (
            "t.csv",
            ("data=table", "data.path=t.csv", "data.target=y", "data.features=[a,b]"),
            "data.features: 'b' is not a column",
        ),
        (
            "t.csv",
            ("data=table", "data.path=t.csv", "data.target=a"),
            "only classification is supported",
        ),
        (
            "one_class.csv",
            ("data=table", "data.path=one_class.csv", "data.target=y"),
            "one class only (0)",
        ),
        ("rare.csv", ("data=table", "data.path=rare.csv", "data.target=y"), "class 7 has 1 row"),
        (
            "nan.csv",
            ("data=table", "data.path=nan.csv", "data.target=y"),
            "column 'a' has 3 missing or infinite values (of 40 rows); data.missing=drop",
        ),
        (
            "inf.csv",
            ("data=table", "data.path=inf.csv", "data.target=y"),
            "column 'a' has 1 missing or infinite values",
        ),
        (
            "t.csv",
            ("data=table", "data.path=t.csv", "data.target=y", "data.val_size=50"),
            "leave no training rows: data.path=t.csv has 40 rows",
        ),
        (
            "t.csv",
            ("data=table", "data.path=t.csv", "data.target=y", "data.val_size=1.5"),
            "data.val_size=1.5 is invalid",
        ),
        (
            "t.csv",
            ("data=table", "data.path=t.csv", "data.target=y", "data.features=[]"),
            "data.features=[] is invalid",
        ),
        (
            "nested.parquet",
            ("data=table", "data.path=nested.parquet", "data.target=y"),
            "column 'a' holds lists or records",
        ),
        (
            "t.csv",
            ("data=table", "data.path=t.csv", "data.target=y", "data.features=[a,a]"),
            "data.features: 'a' is listed twice",
        ),
        (
            "huge.csv",
            ("data=table", "data.path=huge.csv", "data.target=y", "data.scale=standard"),
            "column 'a' holds a value beyond float32's range",
        ),
        (
            "huge.csv",
            ("data=table", "data.path=huge.csv", "data.target=y", "data.scale=none"),
            "column 'a' holds a value beyond float32's range",
        ),
        (
            "nan_target.csv",
            ("data=table", "data.path=nan_target.csv", "data.target=y"),
            "column 'y' (the target) has 2 missing",
        ),
        ("t.csv", ("data=arrays", "data.path=t.csv"), "data.path=t.csv is not an .npz file"),
        ("d.csv", ("data=table", "data.path=d.csv", "data.target=y"), "d.csv is a folder"),
        ("complex.npz", ("data=arrays", "data.path=complex.npz"), "not complex128"),
        ("noX.npz", ("data=arrays", "data.path=noX.npz"), "holds no array 'X' (it holds y)"),
        ("short.npz", ("data=arrays", "data.path=short.npz"), "X has 40 rows but y has 39"),
        ("t.csv", ("data=mnist_5k", "+data.path=t.csv"), "data.path is invalid with data.name"),
    ],
)
def test_bad_data_is_one_line_exit_2_and_no_run_folder(run_app, tmp_path, make, args, says):
    frame = _frame()
    files = {
        "garbage.parquet": lambda p: p.write_text("not parquet"),
        "t.txt": lambda p: frame.to_csv(p),
        "t.csv": lambda p: frame.to_csv(p, index=False),
        "one_class.csv": lambda p: frame.assign(y=0).to_csv(p, index=False),
        "rare.csv": lambda p: frame.assign(y=[0, 1] * 19 + [0, 7]).to_csv(p, index=False),
        "nan.csv": lambda p: frame.assign(a=[np.nan] * 3 + [1.0] * 37).to_csv(p, index=False),
        "inf.csv": lambda p: frame.assign(a=[np.inf] + [1.0] * 39).to_csv(p, index=False),
        "nested.parquet": lambda p: frame.assign(a=[[1.0, 2.0]] * 40).to_parquet(p),
        "huge.csv": lambda p: frame.assign(a=[1e40] + [1.0] * 39).to_csv(p, index=False),
        "nan_target.csv": lambda p: frame.assign(y=[np.nan] * 2 + [0, 1] * 19).to_csv(
            p, index=False
        ),
        "d.csv": lambda p: p.mkdir(),
        "complex.npz": lambda p: np.savez(p, X=np.ones((40, 2), complex), y=frame.y),
        "noX.npz": lambda p: np.savez(p, y=np.zeros(3)),
        "short.npz": lambda p: np.savez(p, X=np.zeros((40, 2)), y=np.zeros(39)),
    }
    if make:
        files[make](tmp_path / make)
    refused(run_app(*args, "epochs=1", "hydra.run.dir=r"), says)
    assert not (tmp_path / "r").exists()


def test_missing_drop_drops_the_rows_with_a_missing_value(run_app, tmp_path):
    frame = _frame().assign(a=[np.nan] * 4 + list(range(36)))
    args = ("data=table", _table(tmp_path, frame), "data.target=y", "data.missing=drop")
    assert run_app(*args, "epochs=1", "hydra.run.dir=r").code == 0
    saved = metrics(tmp_path / "r")
    assert saved["config"]["data"]["missing"] == "drop"


def test_a_changed_file_is_refused_as_other_settings_and_a_moved_one_is_not(run_app, tmp_path):
    args = ("data=table", "data.target=y", "epochs=1", "hydra.run.dir=r")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=40), "y": [0, 1] * 20})
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert run_app(*args, "data.path=t.csv").code == 0
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "t.csv", tmp_path / "elsewhere" / "t.csv")
    moved = run_app(*args, "data.path=elsewhere/t.csv")
    assert moved.code == 0 and "complete already" in moved.out + moved.err
    frame.assign(a=frame.a + 1).to_csv(tmp_path / "elsewhere" / "t.csv", index=False)
    changed = run_app(*args, "data.path=elsewhere/t.csv")
    refused(changed, "other settings (data.sha256=")


def test_the_stacked_launcher_pads_by_the_data_sets_own_inputs_and_classes():
    # Two layers: 16-16 beside 16-64 costs 1.05x its weights padded with MNIST's 784 inputs,
    # 1.30x with the 64 inputs of digits.
    base = {"data": {"name": "digits", "val_size": 0.2, "scale": "standard", "missing": "error"},
        "batch_size": 100, "device": "cpu", "threads": None,
        "model": {"activation": "relu", "name": "softmax_ce"},
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}}  # fmt: skip
    cfgs = {i: OmegaConf.create({**base, "hidden": h}) for i, h in enumerate([[16, 16], [16, 64]])}
    assert data.dims(cfgs[0].data) == (64, 10)
    assert group.partition(cfgs, max_members=16, max_padding=1.2) == [[0], [1]]
    assert group.partition(cfgs, max_members=16, max_padding=1.4) == [[0, 1]]


def test_a_stacked_member_over_digits_agrees_with_its_solo_run(run_app, tmp_path):
    grid = ("-m", "data=digits", "hidden=16,32", "epochs=2", "model.activation=relu")
    assert run_app(*grid, "hydra.sweep.dir=stacked").code == 0
    solo = ("data=digits", "hidden=32", "epochs=2", "model.activation=relu")
    assert run_app(*solo, "hydra/launcher=basic", "hydra.run.dir=solo").code == 0
    stacked, alone = metrics(tmp_path / "stacked" / "1"), metrics(tmp_path / "solo")
    assert stacked["stacked"]["members"] == 2
    for key in ("train_loss", "val_acc", "test_acc"):
        assert stacked["final"][key] == pytest.approx(alone["final"][key], abs=1e-4)


_COLUMNS = st.sampled_from(["int", "float", "string", "category"])


@st.composite
def tables(draw):
    """A table of 6 to 60 rows: feature columns of each type, integer or text labels, some
    missing values."""
    rows = draw(st.integers(6, 60))
    kinds = draw(st.lists(_COLUMNS, min_size=1, max_size=4))
    frame = pd.DataFrame()
    for i, kind in enumerate(kinds):
        values = draw(st.lists(st.integers(-5, 5), min_size=rows, max_size=rows))
        column = pd.Series(values, dtype=float if kind == "float" else int)
        if kind in ("string", "category"):
            column = column.map(lambda v: f"c{v % 3}")
            column = column.astype("category") if kind == "category" else column
        if draw(st.booleans()):
            column = column.mask(pd.Series(range(rows)) == draw(st.integers(0, rows - 1)))
        frame[f"f{i}"] = column
    classes = draw(st.integers(2, 4))
    labels = [i % classes for i in range(rows)]
    frame["y"] = [f"k{v}" for v in labels] if draw(st.booleans()) else labels
    return frame


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=tables(), missing=st.sampled_from(["error", "drop"]))
def test_any_table_is_prepared_or_refused_with_one_line(tmp_path, frame, missing):
    """A table either becomes finite features and one class index a row, split so that every
    row is in exactly one split and every class trains, or is refused with a DataError."""
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    source = prepare.Source.of(OmegaConf.create({
        "name": "table", "path": str(path), "sha256": data.cache.content_hash(path, str(tmp_path)),
        "target": "y", "val_size": 0.2, "scale": "standard", "missing": missing,
        "cache_dir": str(tmp_path)}))  # fmt: skip
    try:
        p = prepare.prepared(source)
    except DataError as err:
        assert "\n" not in str(err)
        return
    rows = np.concatenate([p.train, p.val, p.test])
    kept = frame.dropna() if missing == "drop" else frame
    assert sorted(rows) == list(range(len(kept)))
    assert np.isfinite(p.x).all() and p.x.shape[0] == len(kept)
    assert p.preprocess["classes"] == sorted(set(kept["y"]))
    assert set(p.y[p.train]) == set(range(p.num_classes))


@pytest.mark.parametrize("damage", ["x.npy", "meta.json", "split"])
def test_a_damaged_cache_is_parsed_again(run_app, tmp_path, damage):
    frame = pd.DataFrame({"a": np.arange(40.0), "y": [0, 1] * 20})
    args = ("data=table", _table(tmp_path, frame), "data.target=y", "data.cache_dir=cache")
    assert run_app(*args, "epochs=1", "hydra.run.dir=r1").code == 0
    (folder,) = (tmp_path / "cache" / "tables").iterdir()
    name = next(folder.glob("split-*")).name if damage == "split" else damage
    (folder / name).write_bytes((folder / name).read_bytes()[:50])
    data._load_prepared.cache_clear()
    prepare.prepared.cache_clear()  # a new process
    result = run_app(*args, "epochs=1", "hydra.run.dir=r2")
    assert result.code == 0, result.err
    assert metrics(tmp_path / "r2")["final"] == metrics(tmp_path / "r1")["final"]


def test_a_text_column_of_identifiers_is_refused_rather_than_one_hot_encoded(run_app, tmp_path):
    # 200 distinct ids would become 200 inputs, a million rows of them a million inputs.
    frame = pd.DataFrame({"id": [f"u{i}" for i in range(200)], "y": [0, 1] * 100})
    args = ("data=table", _table(tmp_path, frame), "data.target=y", "hydra.run.dir=r")
    refused(run_app(*args), "column 'id' has 200 distinct values in 200 rows")
    assert not (tmp_path / "r").exists()


def test_a_file_rewritten_with_its_old_size_and_time_is_hashed_again(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n1,0\n")
    before = data.cache.content_hash(path, str(tmp_path))
    stat = path.stat()
    path.write_text("a,y\n2,0\n")  # same size; the old modification time put back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data.cache.content_hash(path, str(tmp_path)) != before


def test_a_study_continues_over_a_moved_file_and_refuses_a_changed_one(run_app, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=40), "y": [0, 1] * 20})
    frame.to_csv(tmp_path / "t.csv", index=False)
    search = ("hparams_search=optuna", "data=table", "data.target=y", "epochs=1", "hidden=8")
    assert run_app(*search, "data.path=t.csv", "hydra.sweeper.n_trials=1").code == 0
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "t.csv", tmp_path / "moved" / "t.csv")
    moved = run_app(*search, "data.path=moved/t.csv", "hydra.sweeper.n_trials=2")
    assert moved.code == 0, moved.err
    frame.assign(a=frame.a * 2).to_csv(tmp_path / "moved" / "t.csv", index=False)
    changed = run_app(*search, "data.path=moved/t.csv", "hydra.sweeper.n_trials=3")
    refused(changed, "was started with other settings (data.sha256=")


@pytest.mark.parametrize("key", ["data.sha256", "data.test_sha256"])
def test_a_hash_set_by_hand_that_is_not_the_files_own_is_refused(run_app, tmp_path, key):
    # Else the cache, keyed by the hash, would give another file's rows for this one.
    _table(tmp_path, _frame(), "first.csv")
    _table(tmp_path, _frame().assign(y=[1, 0] * 20), "second.csv")
    first = data.cache.content_hash(tmp_path / "first.csv", str(tmp_path))
    args = ("data=table", "data.path=second.csv", "data.target=y", "hydra.run.dir=r")
    if key == "data.test_sha256":
        args = (*args, "data.test_path=second.csv")
    refused(run_app(*args, f"{key}={first}", "epochs=1"), f"{key}={first} is invalid")
    assert not (tmp_path / "r").exists()


def test_scaling_leaves_one_hot_columns_0_or_1(run_app, tmp_path):
    frame = _frame().assign(a=np.arange(40.0) * 10, colour=["red", "red", "blue", "green"] * 10)
    args = ("data=table", _table(tmp_path, frame), "data.target=y", "data.scale=standard")
    assert run_app(*args, "epochs=1", "hydra.run.dir=r").code == 0
    how = json.loads((tmp_path / "r" / "preprocess.json").read_text())
    assert how["columns"] == ["a", "colour=blue", "colour=green", "colour=red"]
    assert how["scale"]["mul"][0] != 1 and how["scale"]["mul"][1:] == [1, 1, 1]
    assert how["scale"]["add"][1:] == [0, 0, 0]


def test_bad_data_leaves_no_folder_when_matplotlibs_font_cache_is_new(tmp_path):
    # Building the font cache logs a line, which would open the run's log file.
    _table(tmp_path, _frame().assign(a=[np.nan] + [1.0] * 39), "nan.csv")
    args = ("data=table", "data.path=nan.csv", "data.target=y", "hydra.run.dir=r")
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: data.path=nan.csv: column 'a' has 1 missing or infinite values (of 40 rows); "
        "data.missing=drop drops those rows"
    ]
    assert not (tmp_path / "r").exists()


def test_predict_writes_by_the_extension_of_out_and_stops_quietly_at_a_closed_pipe(
    run_app, tmp_path, capsys
):
    frame = _frame(4000)
    args = ("data=table", _table(tmp_path, frame), "data.target=y", "hydra.run.dir=r")
    assert run_app(*args, "epochs=1").code == 0
    run, rows = str(tmp_path / "r"), str(tmp_path / "t.csv")
    assert cli.main(["predict", run, rows, "--out", str(tmp_path / "p.json")]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "p.json").exists()
    assert cli.main(["predict", run, rows, "--out", str(tmp_path / "p.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == 4000
    code = (
        f"import sys; from mlp_sweep import cli; sys.exit(cli.main(['predict', {run!r}, {rows!r}]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline().startswith(b"predicted,")
    proc.stdout.close()  # as `| head -1` does
    assert proc.wait(timeout=120) == 1
    assert proc.stderr.read() == b""


def test_boolean_arrays_are_features_of_0_and_1(run_app, tmp_path):
    x = np.random.default_rng(0).random((40, 2)) > 0.5
    np.savez(tmp_path / "b.npz", X=x, y=x[:, 0].astype(int))
    assert run_app("data=arrays", "data.path=b.npz", "epochs=1", "hydra.run.dir=r").code == 0


def test_the_cache_removes_stale_temporary_folders_and_follows_the_umask(run_app, tmp_path):
    stale = tmp_path / "cache" / "tables" / ".0123456789abcdef.k2j4h5"  # of a killed parse
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))
    args = ("data=table", _table(tmp_path, _frame()), "data.target=y", "data.cache_dir=cache")
    assert run_app(*args, "epochs=1", "hydra.run.dir=r").code == 0
    (folder,) = (tmp_path / "cache" / "tables").iterdir()
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in folder.iterdir())


@pytest.mark.parametrize("name", ["table", "arrays"])
def test_a_relative_data_path_is_found_when_hydra_changes_into_the_run_folder(
    run_app, tmp_path, name
):
    if name == "table":
        args = ("data=table", _table(tmp_path, _frame()), "data.target=y")
    else:
        np.savez(tmp_path / "t.npz", X=_frame()[["a"]].to_numpy(), y=_frame().y)
        args = ("data=arrays", "data.path=t.npz")
    result = run_app(*args, "hydra.job.chdir=true", "epochs=1", "hydra.run.dir=r")
    assert result.code == 0, result.err
    assert metrics(tmp_path / "r")["config"]["data"]["sha256"] is not None
