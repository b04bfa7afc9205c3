"""Atomic file writes: a temporary file in the same folder, then os.replace, so nothing is half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write(path: str | os.PathLike, data: str | bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj, indent: int = 1) -> Path:
    return write(path, json.dumps(obj, indent=indent))
