"""The one error type for bad scene input."""

from pathlib import Path


class DataError(ValueError):
    """Bad scene input; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
