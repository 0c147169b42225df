"""mlp_sweep: Hydra-configured hyperparameter sweeps of multilayer perceptrons in PyTorch.

From Python (a notebook): ``mlp_sweep.sweep(*overrides)`` runs a sweep and returns its table;
``load``, ``history`` and ``plot`` read any folder of runs (:mod:`mlp_sweep.notebook`).
"""

from typing import Any

__all__ = ["history", "load", "plot", "sweep"]


def __getattr__(name: str) -> Any:
    # The notebook functions import pandas: only when one is first used, so that
    # `import mlp_sweep` (which Hydra's start-up does, --help included, and every
    # `mlp-sweep` command) stays cheap. The config schema is registered by mlp_sweep.config.
    if name in __all__:
        from mlp_sweep import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
