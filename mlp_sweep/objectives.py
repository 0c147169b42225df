"""What a run returns to its sweeper: one metric, or several, and which runs are Pareto-optimal.

``objective`` is one metric name (``val_acc``) or a list of them (``[val_acc, n_params]``).
Each metric improves in the direction :func:`mlp_sweep.records.direction` gives it; with
several, no single run is best, and the runs no other run beats on every metric at once
form the Pareto front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlp_sweep import records


def names(objective: Any) -> list[str]:
    """The objective's metric names, as a list.

    >>> names("val_acc"), names(["val_acc", "n_params"])
    (['val_acc'], ['val_acc', 'n_params'])
    """
    if isinstance(objective, str):
        return [objective]
    return [str(name) for name in objective]


def directions(objective: Any) -> list[str]:
    """One direction per metric.

    >>> directions(["val_acc", "seconds"])
    ['maximize', 'minimize']
    """
    return [records.direction(name) for name in names(objective)]


def entry(objective: Any) -> dict[str, Any]:
    """metrics.json's ``objective`` before the run ends: a name and a direction, or a list
    of each for several metrics.

    >>> entry("val_acc")
    {'metric': 'val_acc', 'direction': 'maximize', 'value': None}
    """
    if isinstance(objective, str):
        return {"metric": objective, "direction": records.direction(objective), "value": None}
    return {"metric": names(objective), "direction": directions(objective), "value": None}


def value(metrics: Mapping[str, float], objective: Any) -> float | list[float]:
    """The objective's value among ``metrics``: a number for one metric, a list for several.

    >>> value({"val_acc": 0.9, "n_params": 79510}, ["val_acc", "n_params"])
    [0.9, 79510]
    """
    if isinstance(objective, str):
        return metrics[objective]
    return [metrics[name] for name in names(objective)]


def show(objective: Any, result: Any) -> str:
    """``val_acc 0.9123``, or ``val_acc 0.9123, n_params 79510`` for several metrics.

    >>> show(["val_acc", "n_params"], [0.91234, 79510])
    'val_acc 0.9123, n_params 79510'
    >>> show(["n_params", "seconds"], [1033510.0, 12.3456789])
    'n_params 1033510, seconds 12.3457'
    """
    many = not isinstance(objective, str) and isinstance(result, (list, tuple))
    results = list(result) if many else [result] * len(names(objective))
    return ", ".join(f"{name} {_value(name, v)}" for name, v in zip(names(objective), results))


def _value(name: str, v: Any) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return str(v)  # null: a metric that was not finite
    if name in records.METRICS:
        return f"{v:.4f}"
    if name == "n_params" and float(v).is_integer():
        return str(int(v))  # a count, to its last digit
    return f"{v:.6g}"


def pareto_optimal(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """For each point, whether no other point is at least as good on every metric and better
    on one. A point with a missing (NaN) value is never optimal.

    >>> pareto_optimal([(0.9, 100), (0.8, 50), (0.7, 80)], ["maximize", "minimize"])
    [True, True, False]
    """
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = [
        None if any(math.isnan(float(v)) for v in p) else [s * float(v) for s, v in zip(signs, p)]
        for p in points
    ]
    return [
        a is not None
        and not any(
            b is not None and all(y >= x for x, y in zip(a, b)) and any(y > x for x, y in zip(a, b))
            for b in scored
        )
        for a in scored
    ]
