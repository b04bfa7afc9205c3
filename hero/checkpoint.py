"""Atomic checkpoints: write a temporary file in the same folder, then os.replace it into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_state(path: str | Path, device: str = "cpu") -> dict:
    return torch.load(Path(path), map_location=device, weights_only=False)


def load(path: str | Path, device: str = "cpu"):
    """(model, meta) from a checkpoint. meta has 'config', 'step', 'occupancy' (an OccupancyGrid),
    'camera' (intrinsics of the training scene), 'dt', 'max_steps', 'background', 'data'."""
    from hero.nerf.model import NGPField
    from hero.nerf.occupancy import OccupancyGrid

    st = load_state(path, device)
    cfg = st["config"]
    model = NGPField(cfg["model"], st["aabb"]).to(device)
    model.load_state_dict(st["model"])
    model.eval()
    grid = OccupancyGrid(st["aabb"], cfg["model"]["grid_res"]).to(device)
    grid.load_state_dict(st["occupancy"])
    meta = {k: v for k, v in st.items() if k not in ("model", "optimizer", "occupancy")}
    meta["occupancy"] = grid
    return model, meta
