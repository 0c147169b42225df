"""A table, arrays or a scikit-learn example as a classifier's data: labels mapped to
classes, features encoded as numbers, rows with missing values refused or dropped, a
stratified train/validation/test split, and scaling statistics of the training rows.

The encoded rows are kept in the cache folder once per file content (its SHA-256, not its
path), as ``.npy`` files that a later process maps into memory instead of parsing the file
again; each split is kept beside them as row indices and scaling statistics.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlp_sweep.data import FILE_SOURCES, arrays, count, examples, table
from mlp_sweep.data.cache import cache_path, content_hash, resolve
from mlp_sweep.errors import DataError, one_line
from mlp_sweep.records import UMASK

log = logging.getLogger(__name__)

SPLIT_SEED = 0  # the split never depends on the run's seed
TEST_FRACTION = 0.2  # data.test_size=null: a fifth of the rows, unless data.test_path is set
SCALES = ("standard", "minmax", "none")
MISSING = ("error", "drop")
_FORMAT = 3  # of the cached files; a new one makes new cache folders


@dataclass(frozen=True)
class Source:
    """What a run trains on, from its ``data`` config (hashable: the process cache's key)."""

    name: str
    path: str | None
    sha256: str | None
    target: str | None
    features: tuple[str, ...] | None
    scale: str
    missing: str
    val_size: int | float
    test_size: int | float | None
    test_path: str | None
    test_sha256: str | None
    cache: str

    @classmethod
    def of(cls, data: Any) -> Source:
        features = data.get("features")
        return cls(
            name=data.name,
            path=data.get("path"),
            sha256=data.get("sha256"),
            target=data.get("target"),
            features=tuple(str(f) for f in features) if features is not None else None,
            scale=data.get("scale") or "none",
            missing=data.get("missing") or "error",
            val_size=data.val_size,
            test_size=data.get("test_size"),
            test_path=data.get("test_path"),
            test_sha256=data.get("test_sha256"),
            cache=str(cache_path(data.get("cache_dir"))),
        )

    @property
    def where(self) -> str:
        """The data as errors name it."""
        return f"data.path={self.path}" if self.name in FILE_SOURCES else f"data={self.name}"


@dataclass(frozen=True)
class Prepared:
    x: np.ndarray  # (N, F) float32, encoded, not scaled; mapped from the cache
    y: np.ndarray  # (N,) int64 class indices
    train: np.ndarray  # row indices of each split
    val: np.ndarray
    test: np.ndarray
    preprocess: dict[str, Any]  # what applying the model to new rows needs (preprocess.json)

    @property
    def num_features(self) -> int:
        return self.x.shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.preprocess["classes"])


@functools.lru_cache(maxsize=8)
def prepared(source: Source) -> Prepared:
    """The rows of ``source`` encoded and split; DataError naming what is wrong with them."""
    if source.name in FILE_SOURCES:
        for key, path, digest in (
            ("data.path", source.path, source.sha256),
            ("data.test_path", source.test_path, source.test_sha256),
        ):
            if key == "data.path" and path is None:
                raise DataError(f"data.path is not set: data={source.name} reads its rows from it")
            if path is None:
                continue
            try:
                actual = content_hash(path, source.cache)
            except OSError:
                if resolve(path).is_dir():
                    raise DataError(f"{key}={path} is a folder; name a file in it") from None
                raise DataError(f"{key}={path}: no such file, or it cannot be read") from None
            if digest != actual:  # set by hand: the cache, keyed by it, would mix files up
                raise DataError(
                    f"{key.replace('path', 'sha256')}={digest} is invalid: it is computed from "
                    f"{key}'s content; leave it unset"
                )
    folder = Path(source.cache) / "tables" / _key(_parse_key(source))
    try:
        return _cached(source, folder)
    except _Damaged as err:
        log.warning("%s is damaged (%s); parsing %s again", folder, err, source.where)
        shutil.rmtree(folder, ignore_errors=True)
    return _cached(source, folder)


class _Damaged(Exception):
    """A cache folder's files cannot be read back (cut short, or not what was written)."""


# What reading back a cut-short or altered .npy, .npz or .json file raises.
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _cached(source: Source, folder: Path) -> Prepared:
    """The rows of ``source`` from the cache ``folder``, parsed into it first if need be;
    _Damaged if what the folder holds cannot be read back."""
    if not (folder / "meta.json").is_file():
        _store(folder, *_parse(source))
    try:
        x = np.load(folder / "x.npy", mmap_mode="r")
        y = np.load(folder / "y.npy")
        meta = json.loads((folder / "meta.json").read_text())
        main_rows, classes, how = meta["main_rows"], meta["classes"], meta["encoding"]
        if len(x) != len(y) or len(x) != meta["rows"]:
            raise ValueError(f"it holds {len(x)} feature rows and {len(y)} labels")
    except _READ_ERRORS as err:
        raise _Damaged(one_line(err)) from err
    split_file = folder / f"split-{_key(_split_key(source))}.npz"
    if not split_file.is_file():
        _write_npz(split_file, _split(source, x, y, main_rows, classes, len(how["numeric"])))
    try:
        with np.load(split_file) as parts:
            train, val, test = parts["train"], parts["val"], parts["test"]
            mul, add = parts["mul"].tolist(), parts["add"].tolist()
    except _READ_ERRORS as err:
        raise _Damaged(one_line(err)) from err
    scale = {"kind": source.scale, "mul": mul, "add": add}
    preprocess = {
        "source": source.name,
        "target": source.target,
        **how,
        "scale": scale,
        "classes": meta["classes"],
    }
    return Prepared(x, y, train, val, test, preprocess)


def _parse_key(source: Source) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "name": source.name,
        "sha256": source.sha256,
        "target": source.target,
        "features": source.features,
        "missing": source.missing,
        "test_sha256": source.test_sha256,
    }


def _split_key(source: Source) -> dict[str, Any]:
    return {"val": source.val_size, "test": source.test_size, "scale": source.scale}


def _key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _parse(source: Source) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read, check and encode the rows of ``source``: features, class indices, and what
    ``meta.json`` keeps (the encoding, the classes, how many rows precede a test file's)."""
    frame, labels, test_frame, test_labels = _read(source)
    frame, labels = _complete(frame, labels, source.missing, source.where)
    classes, y = _classes(labels, source)
    how = table.encoding(frame, source.where)
    x = table.encode(frame, how, source.where)
    if test_frame is not None:
        where = f"data.test_path={source.test_path}" if source.test_path else source.where
        test_frame, test_labels = _complete(test_frame, test_labels, source.missing, where)
        x = np.concatenate([x, table.encode(test_frame, how, where)])
        y = np.concatenate([y, _codes(_labels(test_labels, source, check=False), classes, where)])
    meta = {"encoding": how, "classes": classes, "main_rows": len(frame), "rows": len(y)}
    return x, y, meta


def _read(source: Source) -> arrays.Frames:
    if source.name in examples.EXAMPLES:
        frame, labels = examples.read(source.name)
        return frame, labels, None, None
    if source.name == "arrays":
        if source.target is not None or source.features is not None:
            key = "data.target" if source.target is not None else "data.features"
            raise DataError(f"{key} is invalid with data=arrays: its labels are y, its features X")
        if source.test_path is not None:
            raise DataError("data.test_path is invalid with data=arrays: put X_test, y_test in it")
        return arrays.read(source.path)
    frame = table.read(source.path)
    frame, labels = _columns(frame, source, "data.path")
    if source.test_path is None:
        return frame, labels, None, None
    test_frame, test_labels = _columns(
        table.read(source.test_path, "data.test_path"), source, "data.test_path"
    )
    return frame, labels, test_frame, test_labels


def _columns(frame: pd.DataFrame, source: Source, key: str) -> tuple[pd.DataFrame, pd.Series]:
    """The feature columns and the target column of a table."""
    path = source.path if key == "data.path" else source.test_path
    shown = ", ".join(frame.columns[:20])
    if source.target is None:
        raise DataError(f"data.target is not set: name the column of labels; {path} has {shown}")
    if source.target not in frame.columns:
        raise DataError(
            f"data.target={source.target!r} is not a column of {key}={path}; it has {shown}"
        )
    if source.features == ():
        raise DataError(
            "data.features=[] is invalid: name one or more feature columns, or null for every "
            "column but data.target"
        )
    features = source.features or [c for c in frame.columns if c != source.target]
    for i, name in enumerate(features):
        if name in features[:i]:
            raise DataError(f"data.features: {name!r} is listed twice")
        if name not in frame.columns:
            raise DataError(
                f"data.features: {name!r} is not a column of {key}={path}; it has {shown}"
            )
        if name == source.target:
            raise DataError(f"data.features: {name!r} is data.target, the labels")
    if not features:
        raise DataError(f"{key}={path} has no column besides data.target={source.target!r}")
    return frame[list(features)], frame[source.target]


def _complete(
    frame: pd.DataFrame, labels: pd.Series, missing: str, where: str
) -> tuple[pd.DataFrame, pd.Series]:
    """The rows without a missing or infinite value; DataError naming the first column that
    has some, unless ``missing`` is ``drop``."""
    bad = np.zeros(len(frame), dtype=bool)
    target = f"{labels.name if labels.name is not None else 'y'!r} (the target)"
    columns = [*((repr(c), frame[c]) for c in frame.columns), (target, labels)]
    for shown, column in columns:
        rows = table.bad_rows(column)
        if rows.any() and missing != "drop":
            raise DataError(
                f"{where}: column {shown} has {int(rows.sum())} missing or infinite values "
                f"(of {len(frame)} rows); data.missing=drop drops those rows"
            )
        bad |= rows
    if bad.all():
        raise DataError(f"{where}: every row has a missing or infinite value")
    if bad.any():
        keep = ~bad
        return frame[keep].reset_index(drop=True), labels[keep].reset_index(drop=True)
    return frame, labels


def _labels(labels: pd.Series, source: Source, check: bool = True) -> pd.Series:
    """Labels as the values the classes keep: whole numbers as int, text as str; a target
    that looks continuous is refused (``check``: a test file's labels are only looked up)."""
    if pd.api.types.is_bool_dtype(labels):
        return labels.astype(bool)
    if pd.api.types.is_numeric_dtype(labels) and not isinstance(labels.dtype, pd.CategoricalDtype):
        values = labels.to_numpy(dtype=np.float64)
        distinct = len(np.unique(values))
        whole = np.all(values == np.round(values))
        if check and (not whole or distinct > max(2, len(values) // 2)):
            target = f"data.target={source.target!r}" if source.target else f"y of {source.where}"
            raise DataError(
                f"{target} looks continuous ({distinct} distinct values in {len(values)} rows): "
                "it is a regression target, and only classification is supported"
            )
        return pd.Series(values.astype(np.int64) if whole else values)
    return labels.astype(str)


def _classes(labels: pd.Series, source: Source) -> tuple[list[Any], np.ndarray]:
    """The sorted label values (scikit-learn's ``LabelEncoder``) and each row's class index."""
    from sklearn.preprocessing import LabelEncoder

    values = _labels(labels, source)
    encoder = LabelEncoder().fit(values)
    classes = [v.item() if hasattr(v, "item") else v for v in encoder.classes_]
    if len(classes) < 2:
        raise DataError(
            f"{source.where}: the labels hold one class only ({classes[0]!r}); a classifier "
            "needs two or more"
        )
    return classes, encoder.transform(values).astype(np.int64)


def _codes(labels: pd.Series, classes: list[Any], where: str) -> np.ndarray:
    """Class indices of a test file's labels; DataError for a label training never saw."""
    index = {c: i for i, c in enumerate(classes)}
    unseen = sorted({v.item() if hasattr(v, "item") else v for v in labels} - index.keys(), key=str)
    if unseen:
        raise DataError(f"{where}: the label {unseen[0]!r} is not among the training labels")
    return np.array([index[v.item() if hasattr(v, "item") else v] for v in labels], dtype=np.int64)


def _split(
    source: Source,
    x: np.ndarray,
    y: np.ndarray,
    main_rows: int,
    classes: list[Any],
    numeric: int,
) -> dict[str, np.ndarray]:
    """Stratified train/validation/test row indices (scikit-learn's ``train_test_split``),
    and the scaling of each numeric column from the training rows (its ``StandardScaler`` or
    ``MinMaxScaler``) as ``x * mul + add``."""
    from sklearn.model_selection import train_test_split

    separate = len(y) > main_rows  # a test file, or X_test
    if separate and source.test_size is not None:
        raise DataError(
            f"data.test_size={source.test_size} is invalid: the test rows come from "
            f"{'data.test_path' if source.test_path else 'X_test'}; leave it unset"
        )
    test_size = TEST_FRACTION if source.test_size is None and not separate else source.test_size
    n_test, n_val = count(test_size, main_rows), count(source.val_size, main_rows)
    if n_test + n_val >= main_rows:
        raise DataError(
            f"data.val_size={source.val_size} and data.test_size={test_size} leave no training "
            f"rows: {source.where} has {main_rows} rows"
        )
    rows = np.arange(main_rows)
    test = np.arange(main_rows, len(y))
    for key, size in (("data.test_size", n_test), ("data.val_size", n_val)):
        if size == 0:
            continue
        labels, counts = np.unique(y[rows], return_counts=True)
        if counts.min() < 2:
            name = classes[labels[counts.argmin()]]
            raise DataError(
                f"{source.where}: class {name!r} has {counts.min()} row, too few for the "
                f"stratified split of {key} (at least 2 of each class)"
            )
        try:
            rows, held = train_test_split(
                rows, test_size=size, stratify=y[rows], random_state=SPLIT_SEED
            )
        except ValueError as err:
            value = source.test_size if key == "data.test_size" else source.val_size
            raise DataError(f"{key}={value} is invalid: {one_line(err)}") from None
        if key == "data.test_size":
            test = held
        else:
            val = held
    if n_val == 0:
        val = rows[:0]
    train = np.sort(rows)
    mul, add = _scaling(source.scale, x[train], numeric)
    return {"train": train, "val": np.sort(val), "test": np.sort(test), "mul": mul, "add": add}


def _scaling(kind: str, x: np.ndarray, numeric: int) -> tuple[np.ndarray, np.ndarray]:
    """``x * mul + add`` per column: the first ``numeric`` columns scaled as ``kind`` says,
    the one-hot columns after them left 0 or 1."""
    mul, add = np.ones(x.shape[1], np.float32), np.zeros(x.shape[1], np.float32)
    if kind == "standard" and numeric:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x[:, :numeric])
        mul[:numeric], add[:numeric] = 1 / scaler.scale_, -scaler.mean_ / scaler.scale_
    elif kind == "minmax" and numeric:
        from sklearn.preprocessing import MinMaxScaler

        scaler = MinMaxScaler().fit(x[:, :numeric])
        mul[:numeric], add[:numeric] = scaler.scale_, scaler.min_
    return mul, add


def _store(folder: Path, x: np.ndarray, y: np.ndarray, meta: dict[str, Any]) -> None:
    """Write the parsed rows into ``folder`` at once: built beside it, then renamed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes folders private; the cache is not
    try:
        np.save(tmp / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
        np.save(tmp / "y.npy", y.astype(np.int64))
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "meta.json").is_file():  # another process stored it meanwhile
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# A temporary folder this old was left by a parse that was killed: no parse takes so long.
STALE_AFTER_S = 3600


def _remove_stale(tables: Path) -> None:
    """Remove the temporary folders (``.<key>.<random>``) that killed parses left."""
    now = time.time()
    for tmp in tables.glob(".*.*"):
        with contextlib.suppress(OSError):  # another process removed it meanwhile
            if tmp.is_dir() and now - tmp.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(tmp)


def _write_npz(path: Path, parts: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)
    try:
        np.savez(tmp, **parts)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
