"""Calibration: points along training rays that survive occupancy skipping, and a checkpoint's
scenes and activation ranges."""

from __future__ import annotations

from pathlib import Path

import torch

from hero.data import DataError
from hero.data.rays import image_rays
from hero.data.scene import load_scene
from hero.nerf.model import sh_encode
from hero.nerf.render import Samples, camera_meta, march, prepare_rays, transmittance

from .qnerf import calibrate_ranges

UNIFORM_SHARE = 0.1  # of the weight-calibration inputs drawn uniformly over the samples


@torch.no_grad()
def training_march(grid, scene, dt: float, max_steps: int, n_rays: int = 4096, seed: int = 0) -> Samples:
    """The marched samples of `n_rays` random training rays."""
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
    return march(o, d, grid, dt, max_steps, jitter=False)


def training_samples(grid, scene, dt: float, max_steps: int, n_rays: int = 4096, seed: int = 0):
    """Positions and unit directions of the samples of `n_rays` random training rays."""
    s = training_march(grid, scene, dt, max_steps, n_rays, seed)
    return s.positions, s.directions


@torch.no_grad()
def rendering_importance(model, s: Samples, uniform_share: float = UNIFORM_SHARE) -> dict[str, torch.Tensor]:
    """How much each sample counts in the rendered pixels: for the density net its transmittance (a
    sample behind an opaque surface changes nothing), for the colour net its rendering weight T * alpha.
    Each is normalized and mixed with a uniform share, so no sample's weight is zero."""
    sigma, _ = model.forward_sh(s.positions, sh_encode(s.directions))
    trans = transmittance(sigma, s)
    weight = trans * (1.0 - torch.exp(-sigma * s.dt))

    def mix(p: torch.Tensor) -> torch.Tensor:
        p = p.double().clamp(min=0)
        p = p / p.sum() if float(p.sum()) > 0 else torch.full_like(p, 1.0 / len(p))
        return (1.0 - uniform_share) * p + uniform_share / len(p)

    return {"density": mix(trans), "color": mix(weight)}


def checkpoint_scene(meta: dict, split: str):
    """One split of a checkpoint's scene, at its training downscale (meta from hero.checkpoint.load)."""
    r = meta["render"]
    if not Path(r.data).exists():
        raise DataError(r.data, "the scene this checkpoint was trained on is not there (the checkpoint records "
                                "that folder); put the scene back there, or retrain on its new place")
    return load_scene(r.data, split, r.downscale)


def checkpoint_scenes(meta: dict) -> tuple:
    """(train, val, test) scenes of a checkpoint at its training downscale; val is train when the
    scene has no val split."""
    train, test = checkpoint_scene(meta, "train"), checkpoint_scene(meta, "test")
    try:
        val = checkpoint_scene(meta, "val")
    except DataError:
        val = train
    return train, val, test


def calibrated_ranges(model, meta: dict, train_scene, seed: int = 0):
    """Activation ranges of `model` on 4096 training rays, and each layer's weight-calibration inputs
    drawn by rendering importance."""
    r = meta["render"]
    s = training_march(r.grid, train_scene, r.dt, r.max_steps, n_rays=4096, seed=seed)
    return calibrate_ranges(model, s.positions, s.directions, importance=rendering_importance(model, s))
