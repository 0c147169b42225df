"""What a run does with a folder that already holds one: keep it, continue it, start afresh,
or refuse and change nothing. End to end in-process, and as a property over folder states."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from mlp_sweep import checkpoint, records
from mlp_sweep.app import CONFIG_DIR
from mlp_sweep.errors import ConfigError

DIVERGES = ["lr=1e38", "init_std=0.5"]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``folder``: its content's digest and its modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_diverged_run_fails_with_one_line_and_stays_failed_when_run_again(run_app, tmp_path):
    first = run_app("epochs=2", *DIVERGES, "hydra.run.dir=div")
    assert first.code == 1
    (line,) = first.err.strip().splitlines()
    assert line.startswith("error: ") and "training diverged" in line and "marked failed" in line
    record = read(tmp_path / "div" / "metrics.json")
    assert record["status"] == "failed" and "diverged" in record["error"]
    assert not (tmp_path / "div" / "checkpoint.pt").exists()  # its only epoch was not finite
    before = snapshot(tmp_path / "div")

    again = run_app("epochs=2", *DIVERGES, "hydra.run.dir=div")
    assert again.code == 1
    assert "holds this run, failed" in again.err and "retry_failed=true" in again.err
    assert snapshot(tmp_path / "div") == before


def test_a_grid_rerun_keeps_its_diverged_job_failed(run_app, tmp_path):
    grid = ["-m", "lr=0.1,1e38", "init_std=0.5", "epochs=1", "hydra.sweep.dir=g"]
    first = run_app(*grid)
    assert first.code == 1 and "training diverged" in first.err.strip().splitlines()[-1]
    assert read(tmp_path / "g" / "1" / "metrics.json")["status"] == "failed"
    kept = snapshot(tmp_path / "g" / "1")

    again = run_app(*grid)
    assert again.code == 1
    assert snapshot(tmp_path / "g" / "1") == kept
    assert [read(tmp_path / "g" / j / "metrics.json")["status"] for j in "01"] == [
        "complete",
        "failed",
    ]


def test_retry_failed_continues_a_failed_run_from_its_last_checkpoint(run_app, tmp_path):
    assert run_app("epochs=2", "hidden=20", "hydra.run.dir=r").code == 0
    done = read(tmp_path / "r" / "metrics.json")
    # As if it had failed after its last epoch (a full disk while writing model.pt, say).
    failed = {**done, "status": "failed", "error": "OSError: No space left on device"}
    (tmp_path / "r" / "metrics.json").write_text(json.dumps(failed))

    kept = run_app("epochs=2", "hidden=20", "hydra.run.dir=r")
    assert kept.code == 1 and read(tmp_path / "r" / "metrics.json")["status"] == "failed"
    retried = run_app("epochs=2", "hidden=20", "retry_failed=true", "hydra.run.dir=r")
    assert retried.code == 0, retried.err
    again = read(tmp_path / "r" / "metrics.json")
    assert again["status"] == "complete" and again["final"] == done["final"]


@pytest.mark.parametrize("status", ["interrupted", "complete"])
def test_a_refused_rerun_changes_nothing_in_the_folder(run_app, tmp_path, status):
    assert run_app("epochs=2", "hidden=20", "hydra.run.dir=r").code == 0
    if status == "interrupted":
        record = read(tmp_path / "r" / "metrics.json")
        record.update(status="interrupted", final={})
        (tmp_path / "r" / "metrics.json").write_text(json.dumps(record))
    before = snapshot(tmp_path / "r")
    result = run_app("epochs=2", "hidden=20", "lr=0.2", "hydra.run.dir=r")
    assert result.code == 2
    assert "other settings (lr=0.1 there, 0.2 now)" in result.err
    assert snapshot(tmp_path / "r") == before  # metrics.json, .hydra/, the log: all as they were


def test_resume_false_trains_a_complete_run_of_the_same_settings_again(run_app, tmp_path):
    assert run_app("epochs=1", "hidden=20", "hydra.run.dir=r").code == 0
    first = read(tmp_path / "r" / "metrics.json")
    result = run_app("epochs=1", "hidden=20", "resume=false", "hydra.run.dir=r")
    assert result.code == 0 and "complete already" not in result.out + result.err
    second = read(tmp_path / "r" / "metrics.json")
    assert second["history"][0]["seconds"] != first["history"][0]["seconds"]  # trained again
    assert second["final"] == first["final"]  # the same settings and seed: the same numbers


def test_a_complete_run_trained_further_matches_one_trained_straight(run_app, tmp_path):
    assert run_app("epochs=1", "hidden=20", "hydra.run.dir=longer").code == 0
    assert run_app("epochs=3", "hidden=20", "hydra.run.dir=longer").code == 0
    assert run_app("epochs=3", "hidden=20", "hydra.run.dir=straight").code == 0
    longer, straight = (read(tmp_path / d / "metrics.json") for d in ("longer", "straight"))
    assert longer["status"] == "complete" and longer["final"] == straight["final"]


def test_the_job_folder_records_the_config_only_once_the_run_may_use_it(run_app, tmp_path):
    assert run_app("epochs=1", "hidden=20", "hydra.run.dir=r").code == 0
    saved = OmegaConf.load(tmp_path / "r" / ".hydra" / "config.yaml")
    assert saved.hidden == 20 and saved.epochs == 1
    assert OmegaConf.load(tmp_path / "r" / ".hydra" / "overrides.yaml") == [
        "epochs=1",
        "hidden=20",
    ]
    assert OmegaConf.load(tmp_path / "r" / ".hydra" / "hydra.yaml").hydra.job.name == "mlp_sweep"


# The resume decision as a property: every folder state against every new setting.
STATUSES = ["none", "damaged", "running", "interrupted", "failed", "complete", "pruned"]


def _config(**values):
    overrides = [f"{k}={v}" for k, v in values.items()]
    with initialize_config_dir(config_dir=CONFIG_DIR):
        return compose("config", overrides=overrides)


def _task(cfg):
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


@pytest.fixture(scope="module")
def configs():
    """Configs composed once: lr x epochs x resume x retry_failed."""
    return {
        (lr, epochs, resume, retry): _task(
            _config(lr=lr, epochs=epochs, resume=resume, retry_failed=retry)
        )
        for lr in (0.1, 0.2)
        for epochs in (1, 2, 3)
        for resume in (True, False)
        for retry in (True, False)
    }


def _make_folder(folder: Path, cfg, status: str, epochs_run: int, ckpt: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    history = [{"epoch": e, "train_loss": 1.0, "val_acc": 0.5} for e in range(1, epochs_run + 1)]
    record = {
        "schema_version": records.SCHEMA_VERSION,
        "status": status,
        "error": "boom" if status == "failed" else None,
        "objective": {"metric": "val_acc", "direction": "maximize", "value": 0.5},
        "params": {},
        "final": {},
        "history": history,
        "epochs_run": epochs_run,
        "seconds": {"total": 1.0},
        "config": config,
    }
    if status == "damaged":
        (folder / records.METRICS_FILE).write_text('{"status": "complete"')
    elif status != "none":
        (folder / records.METRICS_FILE).write_text(json.dumps(record))
    if ckpt == "readable":
        state = {"model": {}, "optimizer": {}, "generator": torch.zeros(1), "record": record}
        torch.save(state, folder / records.CHECKPOINT_FILE)
    elif ckpt == "damaged":
        (folder / records.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from(STATUSES),
    ckpt=st.sampled_from(["absent", "readable", "damaged"]),
    old=st.tuples(st.sampled_from([0.1, 0.2]), st.sampled_from([1, 2, 3])),
    epochs_run=st.integers(0, 3),
    new=st.tuples(
        st.sampled_from([0.1, 0.2]), st.sampled_from([1, 2, 3]), st.booleans(), st.booleans()
    ),
)
def test_the_resume_decision_never_loses_or_fakes_a_result(
    configs, tmp_path_factory, status, ckpt, old, epochs_run, new
):
    old_lr, old_epochs = old
    epochs_run = min(epochs_run, old_epochs)
    if status == "complete":
        epochs_run = old_epochs
    folder = tmp_path_factory.mktemp("state")
    _make_folder(folder, configs[(old_lr, old_epochs, True, False)], status, epochs_run, ckpt)
    before = snapshot(folder)
    lr, epochs, resume, retry = new
    cfg = configs[new]
    same = lr == old_lr  # the settings apart from epochs
    try:
        plan = checkpoint.plan(folder, cfg)
    except ConfigError as err:
        assert "\n" not in str(err)
        plan = None
    assert snapshot(folder) == before  # deciding never writes

    if plan is None:  # refused: only where a result of other settings would be lost
        assert status in ("complete", "pruned") or not same or epochs < epochs_run
        assert resume or status in ("complete", "pruned")
        return
    if plan.action == checkpoint.KEEP:  # only a finished run of exactly these settings
        assert status in ("complete", "pruned") and same and epochs == old_epochs and resume
    if status == "failed" and plan.action != checkpoint.KEEP_FAILED:
        assert retry or not resume  # a failed run stays failed unless asked otherwise
    if plan.action == checkpoint.KEEP_FAILED:
        assert status == "failed" and resume and not retry
    if plan.action == checkpoint.CONTINUE:  # from a checkpoint of these settings
        assert ckpt == "readable" and same and resume and epochs >= epochs_run
    if status == "complete" and not (same and epochs == old_epochs):
        assert plan.action == checkpoint.CONTINUE  # trained further, never overwritten


def test_a_ctrl_c_during_a_deferred_block_comes_after_it():
    """A run's last write and the flag saying it is written agree whenever Ctrl-C comes
    (RunRecord.finish): the interrupt is raised once the block has ended."""
    import os
    import signal

    from mlp_sweep import interrupts

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        interrupts.catch()
        done = []
        with pytest.raises(KeyboardInterrupt), interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # Python runs the handler at one of these steps
                pass
            done.append("written")
        assert done == ["written"] and interrupts.pressed()
        assert signal.getsignal(signal.SIGINT) is interrupts._on_sigint
    finally:
        signal.signal(signal.SIGINT, previous)
