"""Ray marching through the occupancy grid and packed volume rendering."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hero.data.rays import box_intersect, image_rays, to_ndc
from hero.nerf.model import sh_encode


@dataclass
class Samples:
    """Samples that survive empty-space skipping, sorted by ray then by distance."""

    positions: torch.Tensor  # [S, 3]
    directions: torch.Tensor  # [S, 3] unit
    ray_ids: torch.Tensor  # [S] int64
    t: torch.Tensor  # [S]
    dt: torch.Tensor  # [S]
    n_rays: int

    def __len__(self) -> int:
        return int(self.ray_ids.shape[0])


def step_size(aabb: torch.Tensor, steps_per_ray: int) -> float:
    """Constant marching step: the box diagonal divided by steps_per_ray."""
    return float((aabb[1] - aabb[0]).norm()) / steps_per_ray


def march(origins: torch.Tensor, dirs: torch.Tensor, grid, dt: float, max_steps: int,
          jitter: bool, step_range: tuple[int, int] | None = None) -> Samples:
    """Constant-step samples in the box, keeping those in occupied cells. dirs must be unit vectors.
    step_range limits the marched steps (used by early termination)."""
    near, far = box_intersect(origins, dirs, grid.aabb)
    near = near.clamp(min=0.0)
    k0, k1 = step_range or (0, max_steps)
    k1 = min(k1, max_steps, max(1, int(math.ceil(float((far - near).clamp(min=0).max()) / dt))))
    n = origins.shape[0]
    if k1 <= k0 or n == 0:
        empty = origins.new_zeros((0, 3))
        return Samples(empty, empty, torch.zeros(0, dtype=torch.long, device=origins.device),
                       origins.new_zeros(0), origins.new_zeros(0), n)
    off = torch.rand(n, 1, device=origins.device) if jitter else torch.full((n, 1), 0.5, device=origins.device)
    t = near[:, None] + (torch.arange(k0, k1, device=origins.device)[None] + off) * dt
    # Occupancy test in grid units, without materialising world positions of all candidates.
    scale = grid.res / (grid.aabb[1] - grid.aabb[0])
    og = (origins - grid.aabb[0]) * scale
    dg = dirs * scale
    keep = t < far[:, None]
    inside = keep.clone()
    idx = torch.zeros_like(t, dtype=torch.long)
    for a, mul in ((0, 1), (1, grid.res), (2, grid.res * grid.res)):
        c = torch.floor(og[:, a: a + 1] + t * dg[:, a: a + 1]).long()
        inside &= (c >= 0) & (c < grid.res)
        idx += c.clamp_(0, grid.res - 1) * mul
    keep &= inside & grid.bitfield[idx]
    ray_ids, step = keep.nonzero(as_tuple=True)
    ts = t[ray_ids, step]
    pos = origins[ray_ids] + ts[:, None] * dirs[ray_ids]
    return Samples(pos, dirs[ray_ids], ray_ids, ts, torch.full_like(ts, dt), n)


def transmittance(sigma: torch.Tensor, s: Samples) -> torch.Tensor:
    """[S]: the share of each ray's light that reaches each sample, from the ray's first sample."""
    tau = (sigma * s.dt).double()
    excl = torch.cumsum(tau, 0) - tau
    counts = torch.bincount(s.ray_ids, minlength=s.n_rays)
    starts = torch.cumsum(counts, 0) - counts
    first = excl[starts.clamp(max=max(len(s) - 1, 0))] if len(s) else excl.new_zeros(s.n_rays)
    return torch.exp(-(excl - first[s.ray_ids])).float()


def composite(sigma: torch.Tensor, rgb: torch.Tensor, s: Samples, start_T: torch.Tensor | None = None):
    """Packed front-to-back compositing. Returns colour [R, 3], opacity [R], depth [R], weights [S]
    (all relative to start_T, the transmittance at the first sample)."""
    n = s.n_rays
    trans = transmittance(sigma, s)
    alpha = 1.0 - torch.exp(-sigma * s.dt)
    w = trans * alpha
    if start_T is not None:
        w = w * start_T[s.ray_ids]
    color = rgb.new_zeros(n, 3).index_add(0, s.ray_ids, w[:, None] * rgb)
    acc = rgb.new_zeros(n).index_add(0, s.ray_ids, w)
    depth = rgb.new_zeros(n).index_add(0, s.ray_ids, w * s.t)
    return color, acc, depth, w


def prepare_rays(origins: torch.Tensor, dirs: torch.Tensor, scene_meta: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays -> the rays the field sees (NDC for forward-facing scenes), unit directions."""
    if scene_meta.get("ndc"):
        origins, dirs = to_ndc(origins, dirs, scene_meta["height"], scene_meta["width"], scene_meta["fx"])
    return origins, dirs / dirs.norm(dim=-1, keepdim=True)


def render_rays(model, grid, origins, dirs, dt: float, max_steps: int, background,
                jitter: bool = True) -> tuple[torch.Tensor, Samples]:
    """Differentiable render of rays (training): colour [R, 3] over the background (a float or [R, 3])."""
    s = march(origins, dirs, grid, dt, max_steps, jitter)
    return render_samples(model, s, sh_encode(dirs), background), s


def pixels(sigma: torch.Tensor, rgb: torch.Tensor, s: Samples, background) -> torch.Tensor:
    """Colour [R, 3] of the samples' density and colour, composited over the background."""
    color, acc, _, _ = composite(sigma, rgb, s)
    return color + background * (1.0 - acc)[:, None]


def render_samples(model, s: Samples, sh: torch.Tensor, background) -> torch.Tensor:
    """Colour [R, 3] of marched samples; sh [R, 16] is the rays' direction encoding."""
    return pixels(*model.forward_sh(s.positions, sh[s.ray_ids]), s, background)


def select_rays(s: Samples, rays: torch.Tensor) -> Samples:
    """The samples of the given rays (ascending indices), renumbered 0..len(rays)-1, order kept."""
    new_id = torch.full((s.n_rays,), -1, dtype=torch.long, device=s.ray_ids.device)
    new_id[rays] = torch.arange(len(rays), device=rays.device)
    keep = new_id[s.ray_ids] >= 0
    return Samples(s.positions[keep], s.directions[keep], new_id[s.ray_ids[keep]], s.t[keep], s.dt[keep], len(rays))


@torch.no_grad()
def render_rays_inference(model, grid, origins, dirs, dt: float, max_steps: int, background: float,
                          segment: int = 64, min_T: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Render with early termination: march in segments, dropping rays once transmittance < min_T.
    Returns colour [R, 3], depth [R], and the number of network evaluations."""
    n = origins.shape[0]
    T = origins.new_ones(n)
    color = origins.new_zeros(n, 3)
    depth = origins.new_zeros(n)
    active = torch.arange(n, device=origins.device)
    sh = sh_encode(dirs)
    evals = 0
    for k0 in range(0, max_steps, segment):
        if active.numel() == 0:
            break
        s = march(origins[active], dirs[active], grid, dt, max_steps, jitter=False, step_range=(k0, k0 + segment))
        if len(s):
            sigma, rgb = model.forward_sh(s.positions, sh[active][s.ray_ids])
            evals += len(s)
            c, a, d, _ = composite(sigma, rgb, s, T[active])
            color[active] += c
            depth[active] += d
            # transmittance after the segment: T * exp(-sum tau) per ray
            tau = torch.zeros(len(active), dtype=torch.float64, device=origins.device).index_add(
                0, s.ray_ids, (sigma * s.dt).double())
            T[active] = T[active] * torch.exp(-tau).float()
        active = active[T[active] > min_T]
    return color + background * T[:, None], depth, evals


def camera_meta(scene) -> dict:
    return {"ndc": scene.ndc, "height": scene.height, "width": scene.width, "fx": scene.fx, "fy": scene.fy,
            "cx": scene.cx, "cy": scene.cy}


@torch.no_grad()
def render_view(model, grid, c2w, meta: dict, dt: float, max_steps: int, background: float,
                chunk: int = 16384, on_chunk=None) -> torch.Tensor:
    """Render one view to an image [H, W, 3] in [0, 1]; on_chunk(pixels) after each chunk (progress)."""
    dev = model.aabb.device
    o, d = image_rays(torch.as_tensor(c2w, dtype=torch.float32, device=dev), meta["height"], meta["width"],
                      meta["fx"], meta["fy"], meta["cx"], meta["cy"])
    o, d = prepare_rays(o, d, meta)
    out = []
    for i in range(0, o.shape[0], chunk):
        out.append(render_rays_inference(model, grid, o[i: i + chunk], d[i: i + chunk], dt, max_steps, background)[0])
        if on_chunk is not None:
            on_chunk(len(out[-1]))
    return torch.cat(out).clamp(0, 1).reshape(meta["height"], meta["width"], 3)


@torch.no_grad()
def frame_samples(grid, c2w, meta: dict, dt: float, max_steps: int) -> Samples:
    """The workload of one frame: every sample that survives occupancy skipping (no early termination),
    with positions, unit directions and ray ids (ray id = row * width + column)."""
    dev = grid.aabb.device
    o, d = image_rays(torch.as_tensor(c2w, dtype=torch.float32, device=dev), meta["height"], meta["width"],
                      meta["fx"], meta["fy"], meta["cx"], meta["cy"])
    o, d = prepare_rays(o, d, meta)
    return march(o, d, grid, dt, max_steps, jitter=False)
