"""What a job can tell from the Hydra launcher config: how many jobs share the machine, and
so how many torch threads each may use."""

from __future__ import annotations

import functools
import os

from omegaconf import DictConfig


def parallel_jobs(launcher: DictConfig) -> int:
    """How many jobs the launcher runs at once.

    Ray: the cores over each task's ``num_cpus``; joblib: ``n_jobs`` (negative counts back
    from the cores, as in joblib); submitit on Slurm:
    ``array_parallelism``; submitit locally: every job of a batch at once, taken as one per
    core; the stacked launcher: ``max_members`` (trained together); Hydra's basic launcher: one.
    """
    cores = os.cpu_count() or 1
    if "max_members" in launcher:  # the stacked launcher: a group of trials in one pass
        return launcher.max_members
    if "ray" in launcher:  # Ray runs as many tasks as their num_cpus fit in the cores
        return max(1, cores // _ray_cpus(launcher))
    if "n_jobs" in launcher:
        workers = launcher.n_jobs or 1
        return workers if workers > 0 else max(1, cores + 1 + workers)
    if "array_parallelism" in launcher:
        return launcher.array_parallelism
    if str(launcher.get("_target_", "")).endswith("LocalLauncher"):
        return cores
    return 1


def job_threads(threads: int | None, launcher: DictConfig) -> int | None:
    """Torch threads for one job: ``threads`` if set, else the CPUs the launcher gives each
    task, else the cores shared out between the jobs running at once (None: torch's own
    default, every core)."""
    if threads:
        return threads
    if "max_members" in launcher:  # the stacked launcher trains in this one process
        return None
    if launcher.get("cpus_per_task"):
        return launcher.cpus_per_task
    if "ray" in launcher:
        return _ray_cpus(launcher)
    if "array_parallelism" in launcher:  # on a cluster each job has its own allocation
        return None
    workers = parallel_jobs(launcher)
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


def _ray_cpus(launcher: DictConfig) -> int:
    return launcher.ray.remote.get("num_cpus") or 1


def use_threads(threads: int | None, launcher: DictConfig) -> None:
    """Give torch the threads :func:`job_threads` says, or, where it says none, torch's own
    default (not what an earlier job of this process set)."""
    import torch  # here: Hydra imports the launchers at start-up, --help included

    default = _torch_threads()  # read before the first job of this process sets any
    torch.set_num_threads(job_threads(threads, launcher) or default)


@functools.cache
def _torch_threads() -> int:
    """Torch's own thread count in this process, before any job set one: what a job with
    ``threads`` unset gets back after a job that set it."""
    import torch

    return torch.get_num_threads()
