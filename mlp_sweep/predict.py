"""A run's model applied to new rows, with the run's own preprocessing (preprocess.json):
the predicted label, in the original label values, and each class's probability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mlp_sweep import records
from mlp_sweep.config import hidden_sizes
from mlp_sweep.data import table
from mlp_sweep.errors import DataError
from mlp_sweep.model import MLP

PREDICTED = "predicted"  # the output's column of predicted labels; then p_<class> for each


def predict(run_dir: Path, rows: Path) -> pd.DataFrame:
    """One row per row of the table ``rows`` (CSV, TSV, Parquet, or an .npz holding ``X``):
    the predicted label, then ``p_<label>`` for each class: the softmax of the outputs for
    ``softmax_ce``; for ``sigmoid_mse``, the sigmoid outputs divided by their sum, so that
    they too add up to 1. DataError for a run without a model or preprocess.json, or rows
    lacking a feature column, holding a missing value or a category the run never saw."""
    how = _preprocess(run_dir)
    cfg = records.read_metrics(run_dir)["config"]
    model_file = run_dir / records.MODEL_FILE
    if not model_file.is_file():
        raise DataError(
            f"{run_dir} has no {records.MODEL_FILE}: it did not complete, or ran with "
            "save_model=false"
        )
    frame = _read(rows, how)
    for column in how["features"]:
        if column in frame.columns and (bad := table.bad_rows(frame[column])).any():
            raise DataError(
                f"{rows}: column {column!r} has {int(bad.sum())} missing or infinite values; "
                "every feature of every row is needed"
            )
    x = table.encode(frame, how, str(rows))
    x = x * np.asarray(how["scale"]["mul"], np.float32) + np.asarray(
        how["scale"]["add"], np.float32
    )
    classes = how["classes"]
    model = MLP(
        len(how["columns"]),
        hidden_sizes(cfg["hidden"]),
        len(classes),
        activation=cfg["model"]["activation"],
        init_std=None,
    )
    model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    model.eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(x))
        if cfg["model"]["name"] == "softmax_ce":
            probs = torch.softmax(logits, dim=1)
        else:
            outputs = torch.sigmoid(logits)
            probs = outputs / outputs.sum(dim=1, keepdim=True)
    out = pd.DataFrame({PREDICTED: [classes[i] for i in logits.argmax(1).tolist()]})
    for k, label in enumerate(classes):
        out[f"p_{label}"] = probs[:, k].numpy()
    return out


def _preprocess(run_dir: Path) -> dict:
    path = run_dir / records.PREPROCESS_FILE
    if not path.is_file():
        raise DataError(
            f"{run_dir} has no {records.PREPROCESS_FILE}: predict applies runs trained on "
            "data=table, data=arrays or a scikit-learn example"
        )
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path} is damaged: {err}") from None


def _read(rows: Path, how: dict) -> pd.DataFrame:
    if rows.suffix.lower() != ".npz":
        return table.read(rows, key="TABLE")
    try:
        with np.load(rows, allow_pickle=False) as npz:
            x = npz["X"]
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"TABLE={rows}: cannot read its array 'X': {err}") from None
    if x.ndim != 2 or x.shape[1] != len(how["features"]):
        raise DataError(
            f"TABLE={rows}: X has shape {x.shape}; the run was trained on "
            f"{len(how['features'])} features"
        )
    return pd.DataFrame(x, columns=how["features"])
