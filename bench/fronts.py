"""Pareto fronts of (PSNR, cost-like value) points, read at a given PSNR.

A point is (psnr, value) with value lower-is-better (latency, latency x size, size). The front keeps
the points that no other point beats on both; along it, value rises with PSNR.
"""

from __future__ import annotations

import itertools
import statistics


def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto-optimal points, sorted by PSNR (and so by value)."""
    best, out = float("inf"), []
    for p, v in sorted(points, key=lambda t: (-t[0], t[1])):  # highest PSNR first
        if v < best:
            out.append((p, v))
            best = v
    return sorted(out)


def value_at(points: list[tuple[float, float]], psnr: float) -> float | None:
    """The front's value at `psnr`, linear between its neighbours; None outside its PSNR span."""
    f = front(points)
    if not f or not f[0][0] <= psnr <= f[-1][0]:
        return None
    if len(f) == 1:
        return f[0][1]
    for (p0, v0), (p1, v1) in itertools.pairwise(f):
        if p0 <= psnr <= p1:
            return v0 + (psnr - p0) / max(p1 - p0, 1e-12) * (v1 - v0)
    return f[-1][1]


def cheapest_at_least(points: list[tuple[float, float]], psnr: float) -> tuple[float, float] | None:
    """The point of least value among those of PSNR >= `psnr` (None if there is none)."""
    ok = [t for t in points if t[0] >= psnr]
    return min(ok, key=lambda t: t[1]) if ok else None


def ratio_interpolated(base: list[tuple[float, float]], new: list[tuple[float, float]]) -> list[float]:
    """base value / new value at equal PSNR: each method's points against the other's front
    interpolated at their PSNR (points outside the other front's PSNR span are left out)."""
    out = [v / w for p, v in base if (w := value_at(new, p)) is not None and w > 0]
    out += [w / v for p, v in new if (w := value_at(base, p)) is not None and v > 0]
    return out


def ratio_nearest(base: list[tuple[float, float]], new: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """For each base point, (base value / value, PSNR gained) against the cheapest new point of no lower PSNR."""
    out = []
    for p, v in base:
        hit = cheapest_at_least(new, p)
        if hit is not None and hit[1] > 0:
            out.append((v / hit[1], hit[0] - p))
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
