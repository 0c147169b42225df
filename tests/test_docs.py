"""Every `python run.py` and `mlp-sweep` command that the README and docs/ show runs as
written, but for fewer epochs and trials, so that none of them goes stale."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA, run_in_process

from mlp_sweep import cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# What a test machine lacks: a Slurm cluster, Ray, a PostgreSQL server at a made-up address,
# an MLflow tracking server.
ELSEWHERE = ("hydra/launcher=slurm", "hydra/launcher=ray", "postgresql://user:pw@", "uri=http")
EPOCHS, TRIALS = 1, 2


def shown_commands() -> list[tuple[str, list[str]]]:
    """(where, words) of each command in the pages' bash blocks, without its comment, a
    `/usr/bin/time ...` before it, or an `&` after it."""
    found = []
    for page in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                while words and words[0] not in ("python", "mlp-sweep"):
                    words.pop(0)  # /usr/bin/time -v, and the like
                words = [w for w in words if w != "&"]
                if words[:2] == ["python", "run.py"] or words[:1] == ["mlp-sweep"]:
                    found.append((f"{page.name}: {line.strip()}", words))
    return found


def shorter(words: list[str]) -> list[str]:
    """The command with at most EPOCHS epochs and TRIALS trials, and the data where they are."""
    args = [w.replace("../shared/data", str(SHARED_DATA)) for w in words[2:]]
    if "--cfg" in args:
        return args
    args = [a for a in args if not a.startswith("hydra.sweeper.n_trials=")]
    if any(a.startswith("hparams_search=") for a in args):
        args.append(f"hydra.sweeper.n_trials={TRIALS}")
    if not any(a.startswith("epochs=") and int(a.split("=")[1]) <= 2 for a in args):
        args = [a for a in args if not a.startswith("epochs=")] + [f"epochs={EPOCHS}"]
    return args


def shown_files() -> dict[str, str]:
    """The Python files the pages show, named by their first line (``# my_spaces.py, ...``)."""
    found = {}
    for page in DOCS:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
            name = re.match(r"# (\w+\.py)\b", block)
            if name:
                found[name.group(1)] = block
    return found


def shown_scripts() -> list[str]:
    """The code of each `python -c "..."` command the pages show: they make the data files
    that later commands read."""
    found = []
    for page in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words[:2] == ["python", "-c"]:
                    found.append(words[2])
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding the sweeps the pages call A and B, and the files they show or make."""
    root = tmp_path_factory.mktemp("docs")
    for name, text in shown_files().items():
        (root / name).write_text(text)
    for code in shown_scripts():
        subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
    for name, lr in (("A", 0.1), ("B", 0.5)):
        args = [
            "-m",
            "hidden=20,40",
            f"lr={lr}",
            "epochs=1",
            f"hydra.sweep.dir=outputs/sweeps/{name}",
        ]
        assert run_in_process(*args, cwd=root).code == 0
    return root


COMMANDS = shown_commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 20
    assert any("hparams_search=optuna" in " ".join(words) for _, words in COMMANDS)


@pytest.mark.parametrize(("where", "words"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_command_the_pages_show_runs(workdir, monkeypatch, where, words):
    text = " ".join(words)
    if any(part in text for part in ELSEWHERE):
        pytest.skip("needs a Slurm cluster, Ray, a PostgreSQL or an MLflow server")
    if "../shared/data" in text and not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST files under {SHARED_DATA}")
    if words[0] == "mlp-sweep":
        cwd = os.getcwd()
        os.chdir(workdir)
        try:
            assert cli.main(words[1:]) == 0, where
        finally:
            os.chdir(cwd)
        return
    monkeypatch.syspath_prepend(str(workdir))  # the files shown, importable as the pages say
    for name in shown_files():  # never a module of the same name that another test imported
        monkeypatch.delitem(sys.modules, name.removesuffix(".py"), raising=False)
    result = run_in_process(*shorter(words), cwd=workdir)
    assert result.code == 0, f"{where}\n{result.err}"


def test_no_file_holds_a_merge_conflict():
    tracked = subprocess.run(
        ["git", "ls-files", "*.md", "*.py", "*.yaml", "*.toml", "*.ipynb"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    marked = [
        f"{name}:{number}"
        for name in tracked.stdout.split()
        for number, line in enumerate((REPO / name).read_text().splitlines(), 1)
        if re.match(r"(<{7}|>{7}) |={7}$", line)
    ]
    assert marked == []
