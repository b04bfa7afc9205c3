"""Occupancy grid for empty-space skipping (Instant-NGP style).

A res^3 grid over the scene box keeps, per cell, a decaying maximum of the optical thickness
sigma * dt seen at random points in the cell; a cell is occupied when that value exceeds
min(0.01, mean over the grid). Ray marching only evaluates the network in occupied cells.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_OPTICAL_THICKNESS = 0.01
DECAY = 0.95


class OccupancyGrid(nn.Module):
    def __init__(self, aabb, res: int = 64):
        super().__init__()
        self.res = res
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone())
        self.register_buffer("density", torch.zeros(res**3))
        # all cells count as occupied until the first update
        self.register_buffer("bitfield", torch.ones(res**3, dtype=torch.bool))

    def cell_index(self, x: torch.Tensor) -> torch.Tensor:
        """Flat cell index (x + y*R + z*R*R) of world positions, -1 outside the box."""
        u = (x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        c = (u * self.res).floor().long()
        inside = ((c >= 0) & (c < self.res)).all(-1)
        c = c.clamp(0, self.res - 1)
        idx = c[..., 0] + c[..., 1] * self.res + c[..., 2] * self.res * self.res
        return torch.where(inside, idx, torch.full_like(idx, -1))

    def occupied(self, x: torch.Tensor) -> torch.Tensor:
        idx = self.cell_index(x)
        return (idx >= 0) & self.bitfield[idx.clamp(min=0)]

    def cell_centres_world(self, cells: torch.Tensor, jitter: bool) -> torch.Tensor:
        r = self.res
        c = torch.stack([cells % r, (cells // r) % r, cells // (r * r)], -1).float()
        c = c + (torch.rand_like(c) if jitter else 0.5)
        return self.aabb[0] + c / r * (self.aabb[1] - self.aabb[0])

    @torch.no_grad()
    def update(self, model, dt: float, fraction: float = 1.0, chunk: int = 65536, replace: bool = False) -> float:
        """Re-sample `fraction` of the cells (all of them during warm-up); returns the occupied share.
        replace=True (warm-up) overwrites the cells instead of keeping a decaying maximum."""
        n = self.res**3
        dev = self.density.device
        cells = torch.arange(n, device=dev) if fraction >= 1.0 else torch.randperm(n, device=dev)[
            : max(1, int(n * fraction))]
        new = torch.empty(cells.shape[0], device=dev)
        for i in range(0, cells.shape[0], chunk):
            x = self.cell_centres_world(cells[i: i + chunk], jitter=True)
            new[i: i + chunk] = model.query_density(x)[0] * dt
        if replace:
            self.density[cells] = new
        else:
            self.density.mul_(DECAY)
            self.density[cells] = torch.maximum(self.density[cells], new)
        thresh = min(MIN_OPTICAL_THICKNESS, float(self.density.mean()))
        self.bitfield.copy_(self.density > thresh)
        return float(self.bitfield.float().mean())
