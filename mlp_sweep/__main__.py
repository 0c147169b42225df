"""``python -m mlp_sweep [-m] [overrides]``: the command of run.py, from any folder."""

from mlp_sweep.app import run
from mlp_sweep.console import stop_with_parent

stop_with_parent()
run()
