"""Errors that mean the user's input is wrong, and how any error is said in one line."""

from __future__ import annotations

# Exit statuses of the command, beside 1 for a run or sweep that failed.
BAD_INPUT = 2  # a config or data error, as argparse uses
INTERRUPTED = 130  # Ctrl-C, as a shell reports a process that SIGINT ended


class BadInput(ValueError):
    """Input the user must change: the message names the key, the value and what is allowed."""


class ConfigError(BadInput):
    """A config value is out of range or names something that does not exist."""


class DataError(BadInput):
    """The data set cannot be found or read."""


class RunFailed(RuntimeError):
    """A run failed for a reason of its own (it diverged), or failed before and is kept so."""


class SweepFailed(RuntimeError):
    """A sweep stopped because too many of its runs failed."""


def one_line(err: BaseException) -> str:
    """The first paragraph of an error message, joined into one line.

    >>> one_line(RuntimeError("Dataset not found.\\nUse download=True.\\n\\nDetails..."))
    'Dataset not found. Use download=True.'
    """
    paragraph = str(err).strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split()) or type(err).__name__
