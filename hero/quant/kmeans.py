"""Clustered (k-means, non-uniform) quantization of hash tables (Gordon et al.): a codebook per level."""

from __future__ import annotations

import torch


@torch.no_grad()
def kmeans_1d(values: torch.Tensor, k: int, iters: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on scalars, initialised at quantiles. Returns (centroids [k] sorted, index per value)."""
    v = values.detach().flatten().double()
    centroids = torch.quantile(v[torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))[:1 << 20]],
                               (torch.arange(k, dtype=torch.float64) + 0.5) / k)
    for _ in range(iters):
        idx = assign(v, centroids)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, idx, v)
        counts = torch.bincount(idx, minlength=k).double()
        moved = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.allclose(moved, centroids):
            break
        centroids = moved.sort().values
    return centroids, assign(v, centroids).reshape(values.shape)


def assign(v: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (centroids sorted ascending)."""
    mid = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(v.double(), mid)
