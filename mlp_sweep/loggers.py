"""Where a run's metrics go besides its own files: TensorBoard and MLflow.

The ``logger`` config group chooses them, several at once (``logger=[csv,tensorboard,mlflow]``).
``csv`` is the run's own files, written always; the others are optional extras, imported only
when chosen, since each costs seconds of start-up in every job.

The run lifecycle calls :func:`start` once the run has its record, :meth:`Loggers.log_epoch`
after every epoch and :meth:`Loggers.finish` when it ends, whatever the end. A logger that
fails (a tracking store that cannot be reached, a full disk) is warned about once and left
out for the rest of the run: the run, and its own files, go on.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mlp_sweep import records
from mlp_sweep.errors import ConfigError, one_line

log = logging.getLogger(__name__)

# Each logger, with the module it needs; the extra that installs it has the logger's name.
MODULES: dict[str, str | None] = {"csv": None, "tensorboard": "tensorboard", "mlflow": "mlflow"}
# A run's status, as MLflow and TensorBoard's HParams dashboard call it.
MLFLOW_STATUS = {
    records.COMPLETE: "FINISHED",
    records.PRUNED: "KILLED",
    records.INTERRUPTED: "KILLED",
    records.FAILED: "FAILED",
}
TENSORBOARD_STATUS = {
    records.COMPLETE: "STATUS_SUCCESS",
    records.PRUNED: "STATUS_SUCCESS",
    records.INTERRUPTED: "STATUS_FAILURE",
    records.FAILED: "STATUS_FAILURE",
}
FINAL_PREFIX = "final/"  # final metrics, apart from the per-epoch ones of the same name
# Config keys that say where or how a run writes, not what it trains: not hyperparameters.
_NOT_HPARAMS = ("logger.", "console", "resume", "save_model", "tags", "data.cache_dir", "data.root")


def check(cfg: DictConfig) -> None:
    """Raise ConfigError for a logger that does not exist or whose package is not installed.

    >>> check(OmegaConf.create({"logger": {"csv": {}}}))
    >>> check(OmegaConf.create({"logger": {"wandb": {}}}))
    Traceback (most recent call last):
    ...
    mlp_sweep.errors.ConfigError: logger=wandb is invalid: allowed: csv, mlflow, tensorboard
    """
    for name in cfg.get("logger") or {}:
        if name not in MODULES:
            raise ConfigError(f"logger={name} is invalid: allowed: {', '.join(sorted(MODULES))}")
        module = MODULES[name]
        if module is not None and not _installed(module):
            raise ConfigError(
                f"logger={name} needs the {module} package, which is not installed: "
                f'pip install -e ".[{name}]"'
            )


def experiment_name(cfg: DictConfig, run_dir: Path) -> str:
    """The MLflow experiment of a run: ``logger.mlflow.experiment`` if set, else the name of
    the sweep folder (the study's folder in a search), else ``runs`` for a single run."""
    chosen = OmegaConf.select(cfg, "logger.mlflow.experiment")
    if chosen:
        return str(chosen)
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir).name
    return run_dir.parent.name


def prepare(cfg: DictConfig, sweep_dir: Path) -> None:
    """Create the MLflow store and the sweep's experiment once, before parallel jobs would
    all try at the same moment. A package that is missing is reported by :func:`check`."""
    if "mlflow" in (cfg.get("logger") or {}) and _installed("mlflow"):
        try:
            _MLflow.experiment(_mlflow_client(cfg.logger.mlflow), cfg, sweep_dir.name)
        except Exception as err:  # each run tries again, and warns if it fails too
            log.debug("the MLflow experiment of %s could not be prepared: %s", sweep_dir, err)


def settle(cfg: DictConfig, run_dir: Path, data: dict[str, Any]) -> None:
    """End the tracker's record of a run that ended without telling it, such as a run whose
    sweep was killed: it ends as ``data`` (its metrics.json) says, not RUNNING forever."""
    if "mlflow" not in (cfg.get("logger") or {}) or not _installed("mlflow"):
        return
    try:
        client = _mlflow_client(cfg.logger.mlflow)
        found = client.get_experiment_by_name(experiment_name(cfg, run_dir))
        if found is None:
            return
        for run in _MLflow.runs_of(client, found.experiment_id, run_dir):
            if run.info.status == "RUNNING":
                if data.get("error"):
                    client.set_tag(run.info.run_id, "error", data["error"][:5000])
                client.set_tag(run.info.run_id, "status", data["status"])
                client.set_terminated(run.info.run_id, status=MLFLOW_STATUS[data["status"]])
    except Exception as err:
        log.warning("the MLflow run of %s could not be ended: %s", run_dir, one_line(err)[:300])


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Loggers:
    """The loggers of one run; a call that raises turns that logger off, with one warning."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.active: dict[str, Any] = {}

    def add(self, name: str, make: Any) -> None:
        try:
            self.active[name] = make()
        except Exception as err:
            self._failed(name, err)

    @property
    def keeps_files(self) -> bool:
        """Whether a logger keeps the run's files (its figure) when the run finishes."""
        return "mlflow" in self.active

    def log_epoch(self, epoch: dict[str, float]) -> None:
        """Log one epoch's record (``epoch``, the metrics, ``seconds``, ``lr``)."""
        self._each("log_epoch", epoch)

    def finish(self, data: dict[str, Any]) -> None:
        """Log the end of the run from its metrics.json content, then close every logger."""
        self._each("finish", data)
        self.active.clear()

    def _each(self, method: str, *args: Any) -> None:
        for name, logger in list(self.active.items()):
            try:
                getattr(logger, method)(*args)
            except Exception as err:
                self._failed(name, err)

    def _failed(self, name: str, err: Exception) -> None:
        self.active.pop(name, None)
        log.warning(
            "logger %s failed and is off for the rest of %s (its own files are kept): %s",
            name,
            self.run_dir,
            one_line(err)[:300],
        )


def start(cfg: DictConfig, run_dir: Path, data: dict[str, Any]) -> Loggers:
    """Open the chosen loggers for a run whose metrics.json content is ``data``."""
    loggers = Loggers(run_dir)
    chosen = cfg.get("logger") or {}
    hparams = _hparams(data)
    fresh = data["epochs_run"] == 0  # else it continues from a checkpoint
    if "tensorboard" in chosen:
        loggers.add("tensorboard", lambda: _TensorBoard(run_dir, hparams, fresh))
    if "mlflow" in chosen:
        name = experiment_name(cfg, run_dir)
        loggers.add("mlflow", lambda: _MLflow(cfg, run_dir, name, hparams, data))
    return loggers


def _hparams(data: dict[str, Any]) -> dict[str, Any]:
    """A run's parameters and config group choices as single values: ``hidden`` 100, or
    ``"[256, 128]"`` for several layers; values that are not set are left out."""
    values = {**data["params"], **data.get("choices", {})}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith(_NOT_HPARAMS):
            continue
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else str(value)
        if value is not None:
            flat[key] = value
    return flat


def _epoch_metrics(epoch: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in epoch.items() if k != "epoch"}


class _TensorBoard:
    """Event files in the run folder, written by ``torch.utils.tensorboard``: the run is one
    TensorBoard run and one HParams session, named after its folder."""

    def __init__(self, run_dir: Path, hparams: dict[str, Any], fresh: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        if fresh:  # the run starts afresh: an earlier attempt's events are not this run's
            for old in run_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(log_dir=str(run_dir))
        # Only the session start, no experiment summary: TensorBoard then builds the HParams
        # table from every run's start info, so all runs of a sweep share its columns.
        _, session_start, _ = hparams_summaries(hparams, {})
        self.writer.file_writer.add_summary(session_start)
        self.step = 0

    def log_epoch(self, epoch: dict[str, float]) -> None:
        self.step = int(epoch["epoch"])
        for name, value in _epoch_metrics(epoch).items():
            self.writer.add_scalar(name, value, self.step)

    def finish(self, data: dict[str, Any]) -> None:
        for name, value in (data.get("final") or {}).items():
            self.writer.add_scalar(FINAL_PREFIX + name, value, self.step)
        self.writer.file_writer.add_summary(_session_end(data["status"]))
        self.writer.close()


def _session_end(status: str) -> Any:
    """TensorBoard's HParams session-end summary, with the run's status."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value(TENSORBOARD_STATUS[status]), end_time_secs=time.time()
    )
    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=info, version=metadata.PLUGIN_DATA_VERSION
    )
    smd = metadata.create_summary_metadata(content)
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=smd)])


def _mlflow_client(settings: DictConfig) -> Any:
    # A tracking server out of reach fails the logger in seconds, not after MLflow's default
    # minutes of retries in every job; set these variables to wait longer. Its retries are
    # not news for the console: the logger's own warning says what failed.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    import mlflow

    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri)


class _MLflow:
    """One MLflow run per job, through ``MlflowClient`` (no global active run, so jobs in
    one process never share one), found by its ``run_dir`` tag. A job that continues from
    its checkpoint continues its MLflow run, or, if its parameters changed (more ``epochs``),
    replaces it with a run that has its history so far: MLflow never changes a parameter. A
    run started afresh replaces it too. A replaced MLflow run is deleted (recoverable with
    ``mlflow gc``'s counterpart, ``mlflow runs restore``), so each run folder has one."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        experiment: str,
        hparams: dict[str, Any],
        data: dict[str, Any],
    ) -> None:
        from mlflow.entities import Param, RunTag

        self.run_dir = run_dir
        self.client = _mlflow_client(cfg.logger.mlflow)
        experiment_id = self.experiment(self.client, cfg, experiment)
        earlier = self.runs_of(self.client, experiment_id, run_dir)
        same = {k: str(v) for k, v in hparams.items()}
        if earlier and data["epochs_run"] > 0 and earlier[0].data.params == same:
            self.run_id = earlier[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            return
        for run in earlier:
            self.client.delete_run(run.info.run_id)
        tags = {"run_dir": str(run_dir), "sweep": experiment, "status": data["status"]}
        if data.get("trial"):
            tags["trial"] = str(data["trial"]["number"])
        run = self.client.create_run(experiment_id, run_name=_run_name(run_dir, data), tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, str(v)) for k, v in hparams.items()]
        self.client.log_batch(self.run_id, params=params, tags=[RunTag("seed", str(data["seed"]))])
        for epoch in data["history"]:  # the epochs of the run it continues, if any
            self.log_epoch(epoch)

    @staticmethod
    def runs_of(client: Any, experiment_id: str, run_dir: Path) -> list[Any]:
        """The MLflow runs of a run folder, the latest first."""
        return client.search_runs(
            [experiment_id],
            filter_string=f"tags.run_dir = '{run_dir}'",
            order_by=["attributes.start_time DESC"],
        )

    @staticmethod
    def experiment(client: Any, cfg: DictConfig, name: str) -> str:
        """The id of experiment ``name``, created if needed (by another job at the same
        moment, too)."""
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = OmegaConf.select(cfg, "logger.mlflow.artifacts")
        location = (Path(artifacts) / name).resolve().as_uri() if artifacts else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log_epoch(self, epoch: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(epoch["epoch"])
        metrics = [Metric(k, v, now, step) for k, v in _epoch_metrics(epoch).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, data: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        now, step = int(time.time() * 1000), int(data.get("epochs_run") or 0)
        final = data.get("final") or {}
        metrics = [Metric(FINAL_PREFIX + k, v, now, step) for k, v in final.items()]
        tags = [RunTag("status", data["status"])]
        if data.get("error"):
            tags.append(RunTag("error", data["error"][:5000]))
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        for name in (records.CURVES_FILE, records.METRICS_FILE):
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS[data["status"]])


def _run_name(run_dir: Path, data: dict[str, Any]) -> str:
    trial = data.get("trial")
    return f"trial {trial['number']}" if trial else run_dir.name
