"""Ctrl-C that saves: a long loop finishes the step it is in, writes its state and stops cleanly.

    with Interruptible() as stop:
        while step < steps:
            ...one step...
            if stop.requested:
                save_state()
                raise Interrupted(step)

The CLI catches `Interrupted`, prints where the run stopped and that rerunning the same command
resumes (hero.cli.interrupted), and exits with 130 (the shell's code for SIGINT). A second Ctrl-C
stops at once.
"""

from __future__ import annotations

import signal
import threading


class Interrupted(KeyboardInterrupt):
    """Raised after the state has been saved; `step` is where a rerun resumes (`unit`: what is counted)."""

    def __init__(self, step: int, where: str = "", unit: str = "step"):
        super().__init__(f"interrupted at {unit} {step}" + (f"; state saved in {where}" if where else ""))
        self.step, self.where = step, where


class Interruptible:
    """Turns the first SIGINT into a request (`requested`) instead of an exception."""

    def __init__(self):
        self.requested = False
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:  # the second Ctrl-C: the old behaviour
            signal.signal(signal.SIGINT, self._old or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> Interruptible:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
