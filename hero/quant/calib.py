"""Calibration: points along training rays that survive occupancy skipping, and a checkpoint's
scenes and activation ranges."""

from __future__ import annotations

import torch

from hero.data import DataError
from hero.data.rays import image_rays
from hero.data.scene import load_scene
from hero.nerf.render import camera_meta, march, prepare_rays

from .qnerf import calibrate_ranges


@torch.no_grad()
def training_samples(grid, scene, dt: float, max_steps: int, n_rays: int = 4096, seed: int = 0):
    """Positions and unit directions of the samples of `n_rays` random training rays."""
    g = torch.Generator().manual_seed(seed)
    meta = camera_meta(scene)
    views = torch.randint(0, len(scene.c2w), (n_rays,), generator=g)
    pix = torch.randint(0, meta["height"] * meta["width"], (n_rays,), generator=g)
    origins, dirs = [], []
    for v in views.unique():
        o, d = image_rays(torch.as_tensor(scene.c2w[int(v)], dtype=torch.float32), meta["height"], meta["width"],
                          meta["fx"], meta["fy"], meta["cx"], meta["cy"])
        sel = pix[views == v]
        origins.append(o[sel])
        dirs.append(d[sel])
    o, d = prepare_rays(torch.cat(origins), torch.cat(dirs), meta)
    s = march(o, d, grid, dt, max_steps, jitter=False)
    return s.positions, s.directions


def checkpoint_scenes(meta: dict) -> tuple:
    """(train, val, test) scenes of a checkpoint at its training downscale; val is train when the
    scene has no val split."""
    downscale = meta["config"].get("downscale", 1)
    train = load_scene(meta["data"], "train", downscale)
    test = load_scene(meta["data"], "test", downscale)
    try:
        val = load_scene(meta["data"], "val", downscale)
    except DataError:
        val = train
    return train, val, test


def calibrated_ranges(model, meta: dict, train_scene, seed: int = 0):
    """Activation ranges (and weight-scale samples) of `model` on 4096 training rays."""
    pos, dirs = training_samples(meta["occupancy"], train_scene, meta["dt"], meta["max_steps"], n_rays=4096,
                                 seed=seed)
    return calibrate_ranges(model, pos, dirs)
