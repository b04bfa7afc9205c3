"""The one error type for bad scene input."""

from __future__ import annotations

from pathlib import Path

from hero.cli import BadInput


class DataError(BadInput):
    """Bad scene input; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    @classmethod
    def at(cls, path, problem: str) -> DataError:
        return cls(path, problem)
