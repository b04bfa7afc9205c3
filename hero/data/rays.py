"""Camera rays (OpenGL convention: camera looks down -z, +y up), ray-box clipping and LLFF NDC."""

from __future__ import annotations

import torch


def camera_dirs(px: torch.Tensor, py: torch.Tensor, fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """Camera-space directions through pixel centres (px, py are integer pixel indices)."""
    return torch.stack([(px + 0.5 - cx) / fx, -(py + 0.5 - cy) / fy, -torch.ones_like(px)], -1)


def pixel_rays(c2w: torch.Tensor, px: torch.Tensor, py: torch.Tensor, fx: float, fy: float, cx: float,
               cy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """World origins and unnormalised directions; c2w is [3, 4] or per-ray [R, 3, 4]."""
    d = camera_dirs(px.float(), py.float(), fx, fy, cx, cy)
    if c2w.dim() == 2:
        dirs = d @ c2w[:, :3].T
        origins = c2w[:, 3].expand_as(dirs)
    else:
        dirs = torch.einsum("rij,rj->ri", c2w[:, :, :3], d)
        origins = c2w[:, :, 3]
    return origins.contiguous(), dirs


def image_rays(c2w: torch.Tensor, height: int, width: int, fx: float, fy: float, cx: float,
               cy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """All rays of one view, row-major, [H*W, 3] each."""
    py, px = torch.meshgrid(torch.arange(height, device=c2w.device), torch.arange(width, device=c2w.device),
                            indexing="ij")
    return pixel_rays(c2w, px.reshape(-1), py.reshape(-1), fx, fy, cx, cy)


def to_ndc(origins: torch.Tensor, dirs: torch.Tensor, height: int, width: int, focal: float,
           near: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """LLFF forward-facing rays into normalised device coordinates (Mildenhall et al. 2020, App. C)."""
    t = -(near + origins[:, 2]) / dirs[:, 2]
    o = origins + t[:, None] * dirs
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = dirs.unbind(-1)
    ax, ay = -2.0 * focal / width, -2.0 * focal / height
    o_ndc = torch.stack([ax * ox / oz, ay * oy / oz, 1.0 + 2.0 * near / oz], -1)
    d_ndc = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2.0 * near / oz], -1)
    return o_ndc, d_ndc


def ndc_box(c2w: torch.Tensor, height: int, width: int, focal: float, step: float = 0.05) -> torch.Tensor:
    """The box [[min xyz], [max xyz]] that holds every ray of the cameras c2w [N, 3, 4] in NDC, from the
    near plane (z = -1) to infinity (z = 1), rounded outward to `step`. Cameras away from the average
    one see past x, y = +-1 (fern's reach +-1.44), where a [-1, 1]^3 box would cut their rays."""
    py = torch.tensor([0, 0, height - 1, height - 1])
    px = torch.tensor([0, width - 1, 0, width - 1])
    c = c2w.float()[:, None].expand(-1, 4, 3, 4).reshape(-1, 3, 4)
    o, d = pixel_rays(c, px.repeat(len(c2w)), py.repeat(len(c2w)), focal, focal, width / 2.0, height / 2.0)
    o, d = to_ndc(o, d, height, width, focal)
    ends = torch.cat([o, o + ((1.0 - o[:, 2]) / d[:, 2])[:, None] * d])  # the near and the far end
    lo = torch.floor(ends.amin(0) / step) * step
    hi = torch.ceil(ends.amax(0) / step) * step
    lo[2], hi[2] = -1.0, 1.0
    return torch.stack([torch.minimum(lo, torch.tensor(-1.0, dtype=lo.dtype)),
                        torch.maximum(hi, torch.tensor(1.0, dtype=hi.dtype))]).float()


def box_intersect(origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through an axis-aligned box (exit < entry: a miss)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    near = torch.minimum(t0, t1).amax(-1)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far
