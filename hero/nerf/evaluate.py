"""Test-view PSNR and SSIM of a field (the float model or a quantized one), with the project's renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hero.nerf.metrics import psnr, ssim
from hero.nerf.render import camera_meta, render_view


@torch.no_grad()
def evaluate_views(field, grid, scene, dt: float, max_steps: int, background: float, views: int | None = None,
                   out_dir: Path | None = None) -> dict:
    """Mean PSNR and SSIM over the first `views` views of `scene`; PNGs into out_dir if given."""
    n = len(scene.c2w) if views is None else min(views, len(scene.c2w))
    meta = camera_meta(scene)
    ps, ss = [], []
    for i in range(n):
        img = render_view(field, grid, torch.from_numpy(scene.c2w[i]), meta, dt, max_steps, background).cpu()
        gt = torch.from_numpy(scene.images[i]).float() / 255.0
        ps.append(psnr(img, gt))
        ss.append(ssim(img, gt))
        if out_dir is not None:
            from PIL import Image

            from hero import atomic

            png = Image.fromarray((img.numpy() * 255 + 0.5).astype(np.uint8))
            atomic.save_image(Path(out_dir) / f"test_{i:03d}.png", png)
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "views": n, "psnr_per_view": ps,
            "ssim_per_view": ss}
