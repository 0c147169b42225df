"""Where parsed and extracted data sets are kept between processes."""

from __future__ import annotations

import os
from pathlib import Path


def cache_path(cache_dir: str | None = None) -> Path:
    """Where extracted and parsed data sets are kept: ``cache_dir``, else
    ``$XDG_CACHE_HOME/mlp_sweep``, else ``~/.cache/mlp_sweep``."""
    if cache_dir:
        return Path(cache_dir).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlp_sweep"
