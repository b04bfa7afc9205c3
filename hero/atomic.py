"""Atomic file writes: a temporary file in the same folder, then os.replace, so nothing is half-written.

Every result file of the project (JSON, CSV, checkpoints, images, Verilog) goes through `open_write`.
The file gets the permissions of the user's umask (0666 & ~umask, 0644 under the usual 022), as a
plain `open(path, "w")` would; `tempfile.mkstemp` alone would leave it 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from hero.cli import BadInput


class OutputError(BadInput):
    """A result cannot be written where it was asked to go; the message names the path."""


def umask() -> int:
    """The process's umask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets under the current umask."""
    return 0o666 & ~umask()


def check_folder(folder: str | os.PathLike) -> Path:
    """Refuse (OutputError) a results folder that a file stands in the way of; creates nothing, so a run
    that fails before its first result leaves no empty folder behind."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise OutputError(f"{p}: exists and is not a folder (results go into a folder)")
            if not os.access(p, os.W_OK | os.X_OK):
                raise OutputError(f"{p}: cannot write there (permission denied)")
            break
    return folder


def make_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` (and its parents); a clear OutputError when a file is in the way or it cannot be made."""
    folder = check_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{folder}: cannot create the folder ({e.strerror})") from None
    return folder


@contextlib.contextmanager
def open_write(path: str | os.PathLike):
    """A binary file object for `path`: written to a temporary file, fsynced, given the umask's mode,
    then moved into place. On any exception the temporary file is removed and `path` is untouched."""
    path = Path(path)
    make_folder(path.parent)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path.parent}: cannot write there ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(path: str | os.PathLike, data: str | bytes) -> Path:
    with open_write(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | os.PathLike, obj, indent: int = 1) -> Path:
    return write(path, json.dumps(obj, indent=indent))


def save_image(path: str | os.PathLike, image) -> Path:
    """A PIL image, in the format of the file name's suffix."""
    from PIL import Image

    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    with open_write(path) as f:
        image.save(f, format=fmt)
    return Path(path)


def save_figure(path: str | os.PathLike, fig, **kw) -> Path:
    """A matplotlib figure (kw: savefig's, e.g. dpi), in the format of the file name's suffix."""
    with open_write(path) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".").lower() or "png", **kw)
    return Path(path)
