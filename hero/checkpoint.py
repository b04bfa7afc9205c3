"""Atomic checkpoints (hero.atomic.open_write: a temporary file, then os.replace) and their loading,
with one clear error for a file that is not one."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from hero import atomic
from hero.cli import BadInput

#: What python -m hero.train writes, and what checkpoint.load needs.
TRAIN_KEYS = ("model", "occupancy", "config", "aabb", "camera", "dt", "max_steps", "background", "data")


class CheckpointError(BadInput):
    """A file that should be a checkpoint (or a saved run state) is not one; the message names it."""


def save(path: str | Path, state: dict) -> None:
    with atomic.open_write(path) as f:
        torch.save(state, f)


def load_state(path: str | Path, device: str = "cpu") -> dict:
    """The dict saved by `save`; CheckpointError when the file is missing, a folder, empty, truncated
    or not a torch file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        st = torch.load(path, map_location=device, weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError,
            AttributeError, ImportError, IndexError, KeyError, TypeError) as e:
        why = "empty file" if path.stat().st_size == 0 else _why(e)
        raise CheckpointError(f"{path}: not a checkpoint (or saved run state), or a truncated one ({why}); "
                              "delete a broken one to start that run over") from None
    if not isinstance(st, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(st).__name__}, not a dict)")
    return st


def _why(e: BaseException) -> str:
    """An exception in a few words: its type and the first line of its message."""
    first = (str(e).splitlines() or [""])[0][:120]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


#: Run states that are not checkpoints: (a key only that state has, what it is).
STATE_KINDS = (("agent", "a search state (search_state.pt)"), ("ranges", "a QAT state (qat_state.pt)"),
               ("field", "a CAQ state (caq_state.pt)"), ("trace", "a search state (search_state.pt)"))


#: The run states that each command saves in its --out, field by field: what a rerun resumes from.
_NONE = type(None)
STATE_FIELDS = {
    "QAT state": {"key": dict, "model": dict, "optimizer": dict, "step": int, "ranges": dict,
                  "best": (dict, _NONE), "history": list},
    "CAQ state": {"settings": dict, "field": dict, "optimizers": dict, "step": int, "loss_fp": float,
                  "loss_target": float, "seconds": float},
    "search state": {"config": dict, "agent": dict, "rows": list, "best": (dict, _NONE), "episode": int},
    "search state of a method": {"config": dict, "trace": list},  # hero.search --method other than ddpg
}


def check_fields(st: dict, path: str | Path, fields: dict, what: str) -> dict:
    """`st` must hold every field of `fields` ({name: type or types}) with its type, counts >= 0;
    CheckpointError naming the file and the field otherwise."""
    for key, kind in fields.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join("None" if k is _NONE else k.__name__ for k in kinds)
        if key not in st:
            raise CheckpointError(f"{path}: not a {what}, or a damaged one: it has no {key!r} ({names}); delete it to "
                                  "start that run over, or use another --out")
        v = st[key]
        ok = isinstance(v, kinds) and not isinstance(v, bool) or (float in kinds and isinstance(v, int))
        if not ok or (int in kinds and isinstance(v, int) and v < 0):
            got = f"{v!r}" if isinstance(v, (int, float)) else f"a {type(v).__name__}"
            raise CheckpointError(f"{path}: a damaged {what}: its {key!r} is {got}, expected "
                                  f"{'a count >= 0' if int in kinds else names}; delete it to start that run over")
    return st


def load_run_state(path: str | Path, what: str, settings_key: str, settings: dict, as_saved=None) -> dict:
    """The run state at `path` (STATE_FIELDS[what]) that a rerun resumes: it must hold the same
    settings (st[settings_key], through `as_saved` for states from before a setting existed), and
    every field. CheckpointError naming the file, or the settings that differ, otherwise."""
    st = load_state(path)
    check_fields(st, path, {settings_key: dict}, what)
    old = st[settings_key] if as_saved is None else as_saved(st[settings_key])
    if old != settings:
        diff = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
        raise CheckpointError(f"{Path(path).parent} holds a {what} with other settings ({', '.join(diff)} differ): "
                              "use another --out")
    return check_fields(st, path, STATE_FIELDS[what], what)


def check_train_state(st: dict, path: str | Path) -> dict:
    """`st` must be a checkpoint of python -m hero.train (a search or QAT state is not)."""
    missing = [k for k in TRAIN_KEYS if k not in st]
    if missing:
        kind = next((f"it is {what}" for key, what in STATE_KINDS if key in st), None)
        raise CheckpointError(f"{path}: not a checkpoint of python -m hero.train "
                              f"({kind or 'no ' + ', '.join(map(repr, missing))}); give the checkpoint.pt that "
                              "hero.train wrote")
    for key, kind in (("config", dict), ("model", dict), ("occupancy", dict), ("data", str)):
        if not isinstance(st[key], kind):
            got = type(st[key]).__name__
            raise CheckpointError(f"{path}: a damaged checkpoint: its {key!r} is {'an' if got[0] in 'aeiou' else 'a'} "
                                  f"{got}, expected a {kind.__name__} (python -m hero.train writes one)")
    return st


@dataclass(frozen=True)
class RenderSettings:
    """How a checkpoint's model is rendered, as it was trained: one record that loads with it."""

    data: str  # the scene's folder (absolute where it was found; see locate_data)
    downscale: int
    grid: object  # the occupancy grid (hero.nerf.occupancy.OccupancyGrid)
    dt: float  # ray-marching step
    max_steps: int
    background: float

    def render_args(self) -> tuple:
        """(grid, dt, max_steps, background): the renderer's arguments, in its order."""
        return self.grid, self.dt, self.max_steps, self.background


#: the saved state's keys that load as meta["render"] (RenderSettings), not as keys of their own
RENDER_KEYS = ("data", "occupancy", "dt", "max_steps", "background")


def locate_data(recorded: str, ckpt: str | Path) -> str:
    """The scene folder a checkpoint records, found from any current folder: as recorded when it
    exists (absolute, or relative to the current folder), else relative to a folder above the
    checkpoint (checkpoints made before paths were recorded absolute hold paths relative to the
    folder they were made in). The project's procedural scene is rebuilt where it is cached.
    Returns the recorded path unchanged when nothing is found (hero.quant.calib.checkpoint_scenes
    then names the checkpoint and the missing folder)."""
    p = Path(recorded)
    if p.exists():
        return str(p.absolute())
    if not p.is_absolute():
        for up in Path(ckpt).absolute().parents:
            if (up / p).exists():
                return str(up / p)
    if p.name == "procedural":
        from hero.data import procedural

        return str(procedural.build(procedural.default_folder()))
    return str(recorded)


def _downscale(cfg: dict) -> int:
    d = cfg.get("downscale", 1)  # checkpoints from before --downscale trained at full resolution
    return d if isinstance(d, int) else 1


def load(path: str | Path, device: str = "cpu"):
    """(model, meta) from a checkpoint. meta has 'config', 'step', 'camera' (intrinsics of the training
    scene) and 'render', the render settings as one RenderSettings (the scene folder located by
    locate_data, the downscale, the occupancy grid, the step, the steps and the background)."""
    from hero.nerf.model import NGPField
    from hero.nerf.occupancy import OccupancyGrid

    st = check_train_state(load_state(path, device), path)
    cfg = st["config"]
    try:
        model = NGPField(cfg["model"], st["aabb"]).to(device)
        model.load_state_dict(st["model"])
        grid = OccupancyGrid(st["aabb"], cfg["model"]["grid_res"]).to(device)
        grid.load_state_dict(st["occupancy"])
        data = locate_data(st["data"], path)
        render = RenderSettings(data, _downscale(cfg), grid, float(st["dt"]), int(st["max_steps"]),
                                float(st["background"]))
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: its model or render settings do not load "
                              f"({_why(e)}); expected a checkpoint "
                              "written by python -m hero.train") from None
    model.eval()
    meta = {k: v for k, v in st.items() if k not in ("model", "optimizer", *RENDER_KEYS)}
    meta["render"] = render
    return model, meta
