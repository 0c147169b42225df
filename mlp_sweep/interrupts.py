"""Ctrl-C that is never lost.

Python raises ``KeyboardInterrupt`` wherever the main thread is when SIGINT arrives. Where
that is a weakref callback or a ``__del__`` (importing torch runs many), Python prints
"Exception ignored in ..." and drops it, and the command went on to train every job; where
it is half-way through composing a config, the error that follows is not the interrupt's.
So the handler also remembers the interrupt: the next job raises it again (job.prepare), the
command ends as interrupted even if none follows, and it reports an error that follows the
interrupt as the interrupt.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

_pressed = False


def catch() -> None:
    """Remember each SIGINT from now on (raising ``KeyboardInterrupt`` as Python's own
    handler does), and forget any earlier one. A process started with SIGINT ignored (in
    the background of a shell script) keeps ignoring it."""
    global _pressed
    _pressed = False
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pressed
    _pressed = True
    raise KeyboardInterrupt


def pressed() -> bool:
    """Whether Ctrl-C was pressed since :func:`catch`."""
    return _pressed


def check() -> None:
    """Raise ``KeyboardInterrupt`` again if Ctrl-C was pressed: one that was lost stops the
    command at the next job."""
    if _pressed:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a Ctrl-C pressed meanwhile until the block ends, then raise it: for a write and
    the flag that says it is written, which must agree (a run's last metrics.json says
    complete, and the run is complete). Outside :func:`catch` (SIGINT ignored, or another
    handler), the block just runs."""
    if signal.getsignal(signal.SIGINT) is not _on_sigint:
        yield
        return
    held: list[bool] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        global _pressed
        _pressed = True
        held.append(True)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, _on_sigint)
        if held:
            raise KeyboardInterrupt
