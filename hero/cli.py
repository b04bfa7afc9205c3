"""What the command lines share: bad input is one line on stderr and exit status 2; Ctrl-C is one line
and exit status 130.

    ap = ArgumentParser(prog="python -m hero.x", description=...)
    ap.add_argument("--steps", type=number(int, lo=1))
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

BAD_INPUT = 2  # the exit status of every refusal
INTERRUPTED = 130  # the shell's status for SIGINT


class BadInput(ValueError):
    """Input a command cannot use: a file (or a field in it), a folder or a flag. The message names it, says
    what is wrong and what would be right. Every command answers it with one line and exit status BAD_INPUT.
    The errors of each input kind derive from it: DataError (scenes), CheckpointError (checkpoints and
    run states), PolicyError (policy JSON), HardwareError (hardware TOML), OutputError (--out)."""

    @classmethod
    def at(cls, path, problem: str) -> BadInput:
        """The error for `problem` (what is wrong, what would be right) with the file at `path`."""
        return cls(f"{path}: {problem}")


def read_file(path, expected: str, error: type[BadInput] = BadInput, parse=None, syntax: str = "text"):
    """An input text file, parsed by `parse` (json.loads, tomllib.loads: anything raising ValueError on bad
    syntax); `error` naming the file when it is a folder, missing, unreadable, not UTF-8 or not valid `syntax`.
    `expected` says what the file should be ("a policy JSON file")."""
    path = Path(path)
    if path.is_dir():
        raise error.at(path, f"is a folder, expected {expected}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error.at(path, f"no such file (expected {expected})") from None
    except UnicodeDecodeError:
        raise error.at(path, f"not valid {syntax} (not UTF-8 text)") from None
    except OSError as e:
        raise error.at(path, f"cannot be read ({e.strerror})") from None
    if parse is None:
        return text
    try:
        return parse(text)
    except ValueError as e:  # json.JSONDecodeError, tomllib.TOMLDecodeError
        raise error.at(path, f"not valid {syntax} ({e})") from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) and exit status BAD_INPUT."""

    def error(self, message: str):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    """An argparse type: an int or a finite float in [lo, hi] ((lo, hi] with lo_open)."""
    word = "an integer" if kind is int else "a number"
    bounds = []
    if lo is not None:
        bounds.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        bounds.append(f"<= {hi:g}")
    want = f"{word}{' ' + ' and '.join(bounds) if bounds else ''}"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}; expected {want}") from None
        if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range; expected {want}")
        return v

    parse.__name__ = kind.__name__
    return parse


def downscale(text: str):
    """--downscale: 'auto' (hero.data.scene.choose_downscale) or an integer >= 1."""
    from hero.data.scene import AUTO

    if text == AUTO:
        return AUTO
    try:
        return number(int, lo=1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {AUTO!r} or an integer >= 1") from None


def refuse(message: str) -> int:
    """Print one error line; return the status to exit with."""
    print(f"error: {message}", file=sys.stderr)
    return BAD_INPUT


def interrupted(exc: KeyboardInterrupt) -> int:
    """Print the one line of a Ctrl-C; return the status to exit with. `Interrupted` (hero.interrupt) says
    where the state was saved; a bare KeyboardInterrupt (a second Ctrl-C) loses at most the unsaved step."""
    from hero.interrupt import Interrupted

    where = str(exc) if isinstance(exc, Interrupted) else "interrupted"
    print(f"\n{where}; rerun the same command to resume", file=sys.stderr)
    return INTERRUPTED


class Status:
    """Status lines with the elapsed time, or nothing: for the phases of a long run that have no bar."""

    def __init__(self, on: bool):
        self.on, self.t0 = on, time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.on:
            print(f"[{time.perf_counter() - self.t0:6.1f} s] {msg}", flush=True)
