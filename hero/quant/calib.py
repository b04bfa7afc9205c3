"""Calibration samples: points along training rays that survive occupancy skipping."""

from __future__ import annotations

import torch

from hero.data.rays import image_rays
from hero.nerf.render import camera_meta, march, prepare_rays


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
