"""mlp_sweep: Hydra-configured hyperparameter sweeps of multilayer perceptrons in PyTorch."""

from mlp_sweep.config import register

register()
