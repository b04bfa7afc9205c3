"""What the benches' command lines share: their input files checked before any work, each refusal one line
naming the flag (hero.cli: exit status 2)."""

from __future__ import annotations

from pathlib import Path

from hero import cli


def checked(ap, flag: str, check):
    """check(), its cli.BadInput (a file, preset or folder that cannot be used) refused as `flag`'s error."""
    try:
        return check()
    except cli.BadInput as e:
        ap.error(f"{flag}: {e}")


def checkpoint_file(ap, flag: str, path: Path, hint: str = "") -> None:
    """`flag` must give a checkpoint of python -m hero.train: not a folder, missing or another file; `hint`
    says how to make a missing one."""
    from hero import checkpoint

    if not path.exists():
        ap.error(f"{flag} {path}: no such file" + (f" ({hint})" if hint else ""))
    try:
        checkpoint.check_train_state(checkpoint.load_state(path), path)
    except checkpoint.CheckpointError as e:  # "PATH: what is wrong"
        ap.error(f"{flag} {e}")


def hardware(ap, flag: str, names: list[str]) -> list:
    """Each hardware preset name or TOML file of `flag`, loaded (sim_py.hw.load_hardware)."""
    from sim_py.hw import load_hardware

    return [checked(ap, flag, lambda n=n: load_hardware(n)) for n in names]


def out_folder(ap, path: Path, flag: str = "--out") -> Path:
    """A results folder that a file does not stand in the way of (hero.atomic.check_folder; creates nothing)."""
    from hero import atomic

    return checked(ap, flag, lambda: atomic.check_folder(path))


TRAIN_LEGO = "train one with `python -m bench.train_lego`"
