"""Arrays from an ``.npz`` file (``numpy.savez``): ``X`` (rows x features) and ``y``
(labels), and optionally ``X_test`` and ``y_test``, a test set of their own."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd

from mlp_sweep.data.cache import resolve
from mlp_sweep.errors import DataError, one_line

Frames = tuple[pd.DataFrame, pd.Series, pd.DataFrame | None, pd.Series | None]


def read(path: str, key: str = "data.path") -> Frames:
    """The features and labels in ``path``, each column of ``X`` named ``x0``, ``x1``, ...;
    DataError naming what is wrong."""
    file = resolve(path)
    if not file.is_file():
        raise DataError(f"{key}={path}: no such file")
    if not zipfile.is_zipfile(file):
        raise DataError(f"{key}={path} is not an .npz file (numpy.savez's zip of arrays X, y, ...)")
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{key}={path} cannot be read as .npz: {one_line(err)}") from None
    for name in ("X", "y"):
        if name not in arrays:
            held = ", ".join(arrays) or "nothing"
            raise DataError(f"{key}={path} holds no array {name!r} (it holds {held})")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{key}={path} holds only one of X_test and y_test; give both or neither")
    x, y = _pair(arrays, "X", "y", path, key)
    if "X_test" not in arrays:
        return x, y, None, None
    x_test, y_test = _pair(arrays, "X_test", "y_test", path, key)
    if x_test.shape[1] != x.shape[1]:
        raise DataError(f"{key}={path}: X_test has {x_test.shape[1]} columns, X has {x.shape[1]}")
    return x, y, x_test, y_test


def _pair(arrays: dict, xs: str, ys: str, path: str, key: str) -> tuple[pd.DataFrame, pd.Series]:
    x, y = arrays[xs], arrays[ys]
    real = (
        x.dtype == bool or np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    )
    if x.ndim != 2 or not real:
        raise DataError(
            f"{key}={path}: {xs} must be a 2-d array of real numbers or booleans, not "
            f"{x.dtype} {x.shape}"
        )
    if y.ndim != 1:
        raise DataError(f"{key}={path}: {ys} must be 1-d (one label a row), not {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{key}={path}: {xs} has {len(x)} rows but {ys} has {len(y)}")
    if len(y) == 0:
        raise DataError(f"{key}={path}: {xs} holds no rows")
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])]), pd.Series(y)
