"""`python run.py ...` for one run, called in-process in a temporary folder."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from mlp_sweep.data import load
from mlp_sweep.model import MLP
from mlp_sweep.records import EPOCH_FIELDS, METRICS, STUDY_PLOTS, write_csv


def only_run_dir(root: Path) -> Path:
    (metrics,) = root.glob("outputs/runs/*/metrics.json")
    return metrics.parent


def test_a_run_writes_metrics_history_curves_and_model(run_app, tmp_path):
    result = run_app("epochs=2", "hidden=32")
    assert result.code == 0, result.err
    run_dir = only_run_dir(tmp_path)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "complete" and m["error"] is None
    assert m["epochs_run"] == 2 and len(m["history"]) == 2
    assert set(m["final"]) == {*METRICS, "n_params"}
    assert m["objective"] == {
        "metric": "val_acc",
        "direction": "maximize",
        "value": m["final"]["val_acc"],
    }
    assert m["params"]["hidden"] == [32] and m["params"]["lr"] == 0.1 and m["seed"] == 1
    assert m["overrides"] == ["epochs=2", "hidden=32"]
    assert {"python", "torch", "hydra-core", "omegaconf"} <= set(m["versions"])
    assert m["seconds"]["total"] >= m["seconds"]["train"] > 0

    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == list(EPOCH_FIELDS) and len(history) == 2
    assert history.to_dict("records") == m["history"]  # the same numbers as metrics.json
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"

    model = MLP(784, [32], 10)
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))


def test_the_same_config_twice_gives_identical_metrics(run_app, tmp_path):
    runs = []
    for name in ("a", "b"):
        assert run_app("epochs=2", f"hydra.run.dir=runs/{name}").code == 0
        runs.append(json.loads((tmp_path / "runs" / name / "metrics.json").read_text()))
    assert runs[0]["final"] == runs[1]["final"]
    assert [e["train_loss"] for e in runs[0]["history"]] == [
        e["train_loss"] for e in runs[1]["history"]
    ]


def test_several_hidden_layers_train(run_app, tmp_path):
    assert (
        run_app(
            "epochs=1", "hidden=[64,32]", "model.activation=relu", "optimizer=adam", "lr=0.001"
        ).code
        == 0
    )
    m = json.loads((only_run_dir(tmp_path) / "metrics.json").read_text())
    assert m["params"]["hidden"] == [64, 32] and m["final"]["val_acc"] > 0.5


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["model=foo"], "model=foo is invalid: allowed: sigmoid_mse, softmax_ce"),
        (["data=imagenet"], "data=imagenet is invalid: allowed: arrays, breast_cancer, digits"),
        (["optimizer=rmsprop"], "optimizer=rmsprop is invalid: allowed: adam, adamw, sgd"),
        (["hiden=100"], "Key 'hiden' not in 'Config'. Did you mean: 'hidden'?"),
        (["batch_size=big"], "batch_size=big"),
        (["hidden=-5"], "hidden=-5 is invalid"),
        (["hidden=[100,0]"], "hidden=[100, 0] is invalid"),
        (["init_std=0"], "init_std=0.0 is invalid"),
        (["batch_size=0"], "batch_size=0 is invalid"),
        (["lr=-0.1"], "lr=-0.1 is invalid"),
        (["epochs=0"], "epochs=0 is invalid"),
        (["objective=val_f1"], "objective='val_f1' is invalid"),
        (
            ["optimizer=adam", "optimizer.betas=[2,0.9]"],
            "optimizer.betas=[2, 0.9] is invalid: torch.optim.Adam cannot be built with it",
        ),
        (["data=mnist", "data.root=nowhere"], "MNIST/raw lacks"),
        (["-m", "lr=0.1,-1"], "lr=-1.0 is invalid"),
        (["-m", "model=softmax_ce,foo"], "model=foo is invalid"),
        pytest.param(
            ["device=cuda"],
            "device='cuda' is invalid: this machine has no such device; allowed here: auto, cpu",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here"),
        ),
        pytest.param(
            ["device=mps"],
            "device='mps' is invalid: this machine has no such device",
            marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is here"),
        ),
        (["data.val_size=3995"], "data.val_size=3995 is invalid"),
        (["-m", "optimizer.momentum=0.5,-1"], "optimizer.momentum=-1 is invalid: torch.optim.SGD"),
        (["-m", "optimizer.momentum=0.1,xyz"], "optimizer.momentum='xyz' is invalid: torch.optim"),
        # A setting of the wrong type, which the optimizer would take and train with.
        (["optimizer.momentum=true"], "optimizer.momentum=true is invalid: torch.optim.SGD takes"),
        (["optimizer.momentum=0.9", "optimizer.nesterov=yes"], "optimizer.nesterov='yes' is"),
        (["+optimizer.maximize=yes"], "optimizer.maximize='yes' is invalid"),
        (["+optimizer.foreach=3"], "optimizer.foreach=3 is invalid"),
        (["optimizer=adam", "optimizer.betas=[0.9]"], "optimizer.betas=[0.9] is invalid"),
        (["optimizer=adam", "optimizer.betas=[0.9,0.99,0.5]"], "takes a list of 2 numbers"),
        (["optimizer.lr=abc"], "optimizer.lr='abc' is invalid: torch.optim.SGD takes a number"),
        # The setting the error names, and no other (momentum is fine in each).
        (["optimizer.momentum=0.9", "+optimizer.foo=1"], "optimizer.foo=1 is invalid"),
        (
            ["optimizer.momentum=0.9", "optimizer.lr=-1"],
            "optimizer (torch.optim.SGD) cannot be built with optimizer.lr=-1, optimizer.momentum="
            "0.9: Invalid learning rate: -1",
        ),
        (
            ["optimizer.momentum=0.9", "optimizer._target_=torch.optim.RMSprop"],
            "optimizer.nesterov=false is invalid: torch.optim.RMSprop cannot be built with it",
        ),
        (["optimizer._target_=builtins.dict"], "optimizer (builtins.dict) cannot be built"),
        (["optimizer._target_=os.getcwd"], "optimizer (os.getcwd) cannot be built"),
        (["optimizer._target_=nope.Nothing"], "optimizer._target_='nope.Nothing' is invalid"),
        (
            ["optimizer._target_=torch.optim.lr_scheduler.StepLR"],
            "error: optimizer (torch.optim.lr_scheduler.StepLR) cannot be built: ",
        ),
        (["optimizer=adam", "optimizer.betas=[0.9,null]"], "optimizer.betas=[0.9, null] is"),
        (["-m", "data.val_size=500,5"], "data.val_size=5 is invalid"),
        (
            ["-m", "model=softmax_ce,sigmoid_mse", "objective=val_loss"],
            "cannot rank runs of both sigmoid_mse and softmax_ce",
        ),
    ],
)
def test_bad_input_fails_with_one_line_and_leaves_no_results(run_app, tmp_path, args, says):
    result = run_app("epochs=1", *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert lines[-1].startswith("error: ") and says in lines[-1]
    assert not list(tmp_path.rglob("metrics.json"))
    assert not list(tmp_path.rglob("summary.csv"))
    assert not list(tmp_path.rglob("*.log"))  # no run folder left with a log in it
    if "-m" in args:  # a sweep is checked whole before any folder is made
        assert not (tmp_path / "outputs").exists()


def test_model_pt_loads_into_the_mlp_with_hidden_as_given(run_app, tmp_path):
    assert run_app("epochs=1", "hidden=32").code == 0
    model = MLP(784, 32, 10)  # an int, as in the config; [32] works the same
    model.load_state_dict(torch.load(only_run_dir(tmp_path) / "model.pt", weights_only=True))
    assert model(torch.zeros(1, 784)).shape == (1, 10)


def test_an_interpolated_override_is_recorded_as_a_parameter(run_app, tmp_path):
    result = run_app("-m", "hidden=50,100", "batch_size=${hidden}", "epochs=1")
    assert result.code == 0, result.err
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    runs = [json.loads((sweep / j / "metrics.json").read_text()) for j in "01"]
    assert [r["params"]["batch_size"] for r in runs] == [50, 100]
    assert "optimizer.lr" not in runs[0]["params"]  # the config's own alias of lr
    summary = pd.read_csv(sweep / "summary.csv")
    assert summary["batch_size"].tolist() == [50, 100]


def test_hparams_search_null_is_no_search(run_app):
    result = run_app("hparams_search=null", "epochs=1", "--cfg", "hydra")
    assert result.code == 0, result.err
    assert "mlp_sweep.sweepers.GridSweeper" in result.out  # the grid's sweeper, not a search


_VALUES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"epoch": st.integers(1, 10_000), **{k: _VALUES for k in EPOCH_FIELDS[1:]}}
        ),
        min_size=1,
        max_size=5,
    )
)
def test_history_csv_is_written_as_pandas_writes_it(tmp_path_factory, epochs):
    """history.csv is written without pandas (a run need not import it), cell for cell as
    ``DataFrame.to_csv`` wrote it before: NaN and None empty, floats as Python prints them."""
    path = tmp_path_factory.mktemp("csv") / "history.csv"
    write_csv(path, epochs, EPOCH_FIELDS)
    expected = pd.DataFrame(epochs, columns=list(EPOCH_FIELDS)).to_csv(index=False)
    assert path.read_text() == expected


_HEAVY = ("torch", "optuna", "pandas", "matplotlib", "hydra", "omegaconf")


def _imported(tmp_path, *argv: str, script: str = "run.py") -> list[str]:
    """Which of _HEAVY a command imported by its end: `python run.py *argv`, or with
    script="cli" the `mlp-sweep` command."""
    return _imported_and_printed(tmp_path, *argv, script=script)[0]


def _imported_and_printed(tmp_path, *argv: str, script: str = "run.py") -> tuple[list[str], str]:
    """What :func:`_imported` says, and what the command printed on stdout."""
    start = (
        f"import runpy; sys.argv = ['run.py', *{list(argv)!r}]; "
        f"runpy.run_path({str(REPO / 'run.py')!r}, run_name='__main__')"
        if script == "run.py"
        else f"from mlp_sweep import cli; sys.argv = ['mlp-sweep', *{list(argv)!r}]; cli.run()"
    )
    code = (
        "import atexit, sys; atexit.register(lambda: print('imported', sorted("
        f"set({_HEAVY!r}) & set(sys.modules)), file=sys.stderr)); {start}"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    said = [line for line in done.stderr.splitlines() if line.startswith("imported ")]
    assert said, done.stderr
    return ast.literal_eval(said[-1].removeprefix("imported ")), done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["--cfg", "job"], ["--info"], ["-sc", "query=bash"]])
def test_commands_that_train_nothing_import_no_torch_optuna_pandas_or_matplotlib(tmp_path, argv):
    assert _imported(tmp_path, *argv) == ["hydra", "omegaconf"]


def test_a_run_imports_neither_pandas_nor_optuna(tmp_path):
    """A run that trains needs torch, and matplotlib for its curves.png; not pandas (the
    summary's tables) nor Optuna (a search's trials). (Its first run fills the data set's
    cache, with scikit-learn's split.)"""
    _imported(tmp_path, "epochs=1", "hydra.run.dir=first")
    imported = _imported(tmp_path, "epochs=1", "hydra.run.dir=run")
    assert imported == ["hydra", "matplotlib", "omegaconf", "torch"]
    assert (tmp_path / "run" / "curves.png").is_file()


def test_a_grid_leaves_pandas_and_matplotlib_to_the_process_drawing_its_figures(tmp_path):
    """A grid's summary (its tables and figure) and its runs' figures are made by the
    process drawing them (mlp_sweep.drawing): the sweep imports neither pandas nor
    matplotlib, and when it ends its files are there and its table is printed."""
    load("mnist_5k", device=torch.device("cpu"), val_size=500)  # the data set's cache filled
    imported, printed = _imported_and_printed(
        tmp_path, "-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=s"
    )
    assert imported == ["hydra", "omegaconf", "torch"]
    sweep = tmp_path / "s"
    for name in ("summary.csv", "summary.md", "summary.png", "0/curves.png", "1/curves.png"):
        assert (sweep / name).is_file(), name
    assert (sweep / "summary.md").read_text().strip() in printed


def test_a_search_leaves_its_study_figures_to_the_process_drawing_its_figures(tmp_path):
    """Optuna's figures of a search's study (whose parameter importances import
    scikit-learn) are drawn by the process drawing the sweep's figures, from the study's
    database: the search imports no matplotlib, and when it ends every figure is there."""
    load("mnist_5k", device=torch.device("cpu"), val_size=500)  # the data set's cache filled
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=3", "epochs=1", "hidden=8"]
    imported, printed = _imported_and_printed(tmp_path, *search)
    assert imported == ["hydra", "omegaconf", "optuna", "torch"]
    assert "Best trial: #" in printed
    folder = tmp_path / "outputs" / "optuna" / "optuna-mnist_5k-val_acc"
    for name in (*STUDY_PLOTS, "summary.png", "0/curves.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG", name


def test_collecting_and_comparing_sweeps_import_neither_torch_nor_hydra(tmp_path, run_app):
    assert run_app("-m", "hidden=20,30", "epochs=1", "hydra.sweep.dir=a").code == 0
    for argv in (["compare", "a", "a"], ["collect", "a"]):
        imported = _imported(tmp_path, *argv, script="cli")
        assert not {"torch", "hydra", "omegaconf"} & set(imported), argv


def test_two_modes_at_once_fail_with_one_line(run_app):
    result = run_app("-m", "hidden=1,2", "--cfg", "job")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: Only one of --run, --multirun, --cfg, --info and --shell_completion can be "
        "specified"
    ]


def test_an_optimizer_setting_that_interpolates_another_trains(run_app, tmp_path):
    # Its type is that of the value it resolves to.
    result = run_app("optimizer=adam", "optimizer.betas=[0.9,${lr}]", "epochs=1")
    assert result.code == 0, result.err
    (record,) = tmp_path.rglob("metrics.json")
    assert json.loads(record.read_text())["config"]["optimizer"]["betas"] == [0.9, 0.1]


def test_a_runs_curves_png_is_titled_by_its_folder_below_the_sweeps(run_app, tmp_path):
    """In a nested ``hydra.sweep.subdir`` the run's folder is ``softmax_ce/h10``, not ``h10``,
    as drawn during the sweep and as drawn again by `mlp-sweep collect`; a single run keeps
    its folder's name."""
    from PIL import Image

    from mlp_sweep import cli

    nested = "hydra.sweep.subdir=${model.name}/h${hidden}"
    sweep = "hydra.sweep.dir=elsewhere/../s"  # named so, and still the same folder
    assert run_app("-m", "hidden=10,20", "epochs=1", sweep, nested).code == 0
    figure = tmp_path / "s" / "softmax_ce" / "h20" / "curves.png"
    assert Image.open(figure).text["Title"] == "softmax_ce/h20: hidden=20 epochs=1"
    figure.unlink()
    assert cli.main(["collect", str(tmp_path / "s")]) == 0
    assert Image.open(figure).text["Title"] == "softmax_ce/h20: hidden=20 epochs=1"
    assert run_app("epochs=1", "hydra.run.dir=r").code == 0
    assert Image.open(tmp_path / "r" / "curves.png").text["Title"] == "r: epochs=1"
