"""The PSNR-latency Pareto set of a search's evaluations, and its hypervolume against a fixed point.

A point is (latency, psnr): latency lower is better, PSNR higher is better. The hypervolume is the
area that the front dominates and that dominates the reference point (latency_ref, psnr_ref); a
point no better than the reference on either axis adds nothing (docs/search.md).
"""

from __future__ import annotations

#: The reference point of the hypervolume, relative to the search's own baselines: latency as a share
#: of uniform 8-bit's, PSNR as dB relative to the FP32 model's on the held-out rays.
HV_REF_LATENCY = 1.0
HV_REF_PSNR_DB = -5.0


def pareto_indices(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (latency, psnr) points, by rising latency; of equal points the first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    out, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            out.append(i)
            best = points[i][1]
    return out


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by the (latency, psnr) points and dominating ref = (latency_ref, psnr_ref)."""
    ok = [(x, y) for x, y in points if x < ref[0] and y > ref[1]]
    area, prev_y = 0.0, ref[1]
    for i in pareto_indices(ok):  # rising latency, rising PSNR
        x, y = ok[i]
        area += (ref[0] - x) * (y - prev_y)
        prev_y = y
    return area


def relative_hypervolume(points: list[tuple[float, float]], latency8_ms: float, psnr_fp32: float) -> float:
    """The hypervolume of (latency ms, PSNR dB) points in the fixed relative frame: latency / uniform 8-bit
    latency against PSNR - FP32 PSNR, reference (HV_REF_LATENCY, HV_REF_PSNR_DB)."""
    rel = [(lat / latency8_ms, p - psnr_fp32) for lat, p in points]
    return hypervolume(rel, (HV_REF_LATENCY, HV_REF_PSNR_DB))
