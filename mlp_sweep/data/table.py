"""A table's columns as a classifier's inputs: reading CSV, TSV and Parquet files, and
encoding feature columns as numbers (numeric columns as they are, string or categorical
columns one-hot), the same way for training and for :func:`mlp_sweep.predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlp_sweep.data.cache import resolve
from mlp_sweep.errors import DataError, one_line

# File name endings, and how pandas reads each.
READERS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def read(path: str | Path, key: str = "data.path") -> pd.DataFrame:
    """The table in ``path``, read by its extension; DataError naming ``key`` if it cannot be.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "t.csv").write_text("a,b\\n1,x\\n2,y\\n")
    >>> frame = read(folder / "t.csv")
    >>> [(c, is_numeric(frame[c])) for c in frame.columns]
    [('a', True), ('b', False)]
    """
    file = resolve(path)
    kind = READERS.get(file.suffix.lower())
    if kind is None:
        raise DataError(
            f"{key}={path} is invalid: a table is read by its extension; allowed: "
            f"{', '.join(READERS)}"
        )
    if not file.is_file():
        raise DataError(f"{key}={path}: no such file")
    try:
        if kind == "parquet":
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_csv(file, sep="\t" if kind == "tsv" else ",")
    except Exception as err:
        raise DataError(f"{key}={path} cannot be read as {kind.upper()}: {one_line(err)}") from None
    if frame.empty:
        raise DataError(f"{key}={path} holds no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def write(frame: pd.DataFrame, path: str | Path, named: str | Path | None = None) -> None:
    """Write ``frame`` to ``path`` in the format the extension of ``named`` (else of
    ``path``) says, as :func:`read` reads it back."""
    kind = READERS[Path(named or path).suffix.lower()]
    if kind == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)


def is_numeric(column: pd.Series) -> bool:
    """Whether a column is used as numbers (integers, floats, booleans) rather than one-hot."""
    return pd.api.types.is_numeric_dtype(column) and not isinstance(
        column.dtype, pd.CategoricalDtype
    )


def bad_rows(column: pd.Series) -> np.ndarray:
    """Which rows of a column are missing, or infinite."""
    bad = column.isna().to_numpy().copy()
    if is_numeric(column) and not pd.api.types.is_bool_dtype(column):
        bad |= np.isinf(column.to_numpy(dtype=np.float64, na_value=np.nan))
    return bad


# A text column with more categories than this (or than half its rows, if more than 20) is
# taken for an identifier: one-hot, it would add an input per row.
MAX_CATEGORIES = 1000


def encoding(frame: pd.DataFrame, where: str) -> dict[str, Any]:
    """How the feature columns of ``frame`` become numbers: its numeric columns, and the
    categories of each other column (scikit-learn's ``OneHotEncoder``, fitted here)."""
    from sklearn.preprocessing import OneHotEncoder

    numeric = [c for c in frame.columns if is_numeric(frame[c])]
    other = [c for c in frame.columns if c not in numeric]
    limit = min(MAX_CATEGORIES, max(20, len(frame) // 2))
    for column in other:
        try:
            distinct = frame[column].nunique()
        except TypeError:  # unhashable values: a Parquet list or struct column
            raise DataError(
                f"{where}: column {column!r} holds lists or records; a feature holds numbers, "
                "text or categories; leave it out with data.features=[...]"
            ) from None
        if distinct > limit:
            raise DataError(
                f"{where}: column {column!r} has {distinct} distinct values in {len(frame)} "
                f"rows: it looks like an identifier, not a category (one input each, at most "
                f"{limit} here); leave it out with data.features=[...]"
            )
    categories: dict[str, list[str]] = {}
    if other:
        encoder = OneHotEncoder().fit(frame[other].astype(str))
        categories = {c: [str(v) for v in cats] for c, cats in zip(other, encoder.categories_)}
    columns = numeric + [f"{c}={v}" for c in other for v in categories[c]]
    return {
        "features": list(frame.columns),
        "numeric": numeric,
        "categories": categories,
        "columns": columns,
    }


def encode(frame: pd.DataFrame, how: dict[str, Any], where: str) -> np.ndarray:
    """The feature columns of ``frame`` as float32, encoded as ``how`` (:func:`encoding`)
    says; DataError naming a missing column, a category never seen, or a numeric column that
    holds text. ``where`` names the table in these errors."""
    from sklearn.preprocessing import OneHotEncoder

    absent = [c for c in how["features"] if c not in frame.columns]
    if absent:
        raise DataError(f"{where} lacks the feature column {absent[0]!r}")
    for column in how["numeric"]:
        if not is_numeric(frame[column]):
            raise DataError(f"{where}: column {column!r} holds text, but was numeric in training")
    with np.errstate(over="ignore"):  # reported below, naming the column
        numbers = frame[how["numeric"]].to_numpy(dtype=np.float32)
    finite = np.isfinite(numbers).all(axis=0)
    if not finite.all():
        raise DataError(
            f"{where}: column {how['numeric'][int(np.argmin(finite))]!r} holds a value beyond "
            "float32's range (3.4e38); rescale it, or leave it out with data.features=[...]"
        )
    parts = [numbers]
    categories = how["categories"]
    if categories:
        values = frame[list(categories)].astype(str)
        for column, known in categories.items():
            unseen = sorted(set(values[column]) - set(known))
            if unseen:
                raise DataError(
                    f"{where}: column {column!r} holds the category {unseen[0]!r}, which the "
                    f"run never saw (it knows {', '.join(map(repr, known[:10]))})"
                )
        encoder = OneHotEncoder(
            categories=list(categories.values()), sparse_output=False, dtype=np.float32
        )
        parts.append(encoder.fit_transform(values))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
