"""Test-view PSNR and SSIM of a field (the float model or a quantized one), with the project's renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hero.nerf.metrics import psnr, ssim
from hero.nerf.render import camera_meta, render_view


@torch.no_grad()
def evaluate_views(field, grid, scene, dt: float, max_steps: int, background: float, views: int | None = None,
                   out_dir: Path | None = None, progress: str | None = None) -> dict:
    """Mean PSNR and SSIM over the first `views` views of `scene`; PNGs into out_dir if given. With
    `progress` (its label), a bar over the pixels appears once rendering takes more than a second.
    `first_image`: view 0's render, [H, W, 3] in [0, 1]."""
    n = len(scene.c2w) if views is None else min(views, len(scene.c2w))
    meta = camera_meta(scene)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n * meta["height"] * meta["width"], desc=f"{progress}: {n} views", unit="px",
                   unit_scale=True, delay=1.0, leave=False, dynamic_ncols=True)
    ps, ss, first = [], [], None
    for i in range(n):
        img = render_view(field, grid, torch.from_numpy(scene.c2w[i]), meta, dt, max_steps, background,
                          on_chunk=None if bar is None else bar.update).cpu()
        gt = torch.from_numpy(scene.images[i]).float() / 255.0
        if i == 0:
            first = img.numpy()
        ps.append(psnr(img, gt))
        ss.append(ssim(img, gt))
        if out_dir is not None:
            from PIL import Image

            from hero import atomic

            png = Image.fromarray((img.numpy() * 255 + 0.5).astype(np.uint8))
            atomic.save_image(Path(out_dir) / f"test_{i:03d}.png", png)
    if bar is not None:
        bar.close()
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "views": n, "psnr_per_view": ps,
            "ssim_per_view": ss, "first_image": first}
