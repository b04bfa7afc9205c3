"""The cycle model's workload: one frame of a trained NeRF, as the accelerator would process it.

A frame's samples come from the NeRF's own ray marcher after occupancy-grid skipping
(hero.nerf.render.frame_samples), so latency depends on the scene as it does on hardware. The
cache simulation uses a sampled trace: `windows` windows of consecutive samples (the hardware's
processing order, ray by ray in scan order) at random offsets; the first `warmup` share of each
window only warms the cache. Misses are scaled by (all samples / counted samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hero.intarith import hash_position


@dataclass(frozen=True)
class LevelSpec:
    name: str
    scale: float
    resolution: int
    entries: int
    dense: bool
    features: int


@dataclass(frozen=True)
class LayerSpec:
    name: str
    k: int
    c_out: int


@dataclass
class Workload:
    name: str
    height: int
    width: int
    n_samples: int  # samples that survive occupancy skipping
    log2t: int
    levels: list[LevelSpec]
    layers: list[LayerSpec]
    trace_pos: np.ndarray  # (S, 3) u16 positions of the traced samples, in processing order
    trace_counted: np.ndarray  # (S,) bool; False for warm-up samples
    samples_per_ray: np.ndarray = field(repr=False)  # (H*W,)

    @property
    def n_rays(self) -> int:
        return self.height * self.width

    @property
    def trace_weight(self) -> float:
        counted = int(self.trace_counted.sum())
        return self.n_samples / counted if counted else 0.0


def units_from_model(model) -> tuple[list[LevelSpec], list[LayerSpec], int]:
    """Hash levels and linear layers, by their stable names, from model.quant_units()."""
    levels, layers = [], []
    for name, kind, info in model.quant_units():
        if kind == "hash_level":
            levels.append(LevelSpec(name, float(info["scale"]), int(info["resolution"]), int(info["entries"]),
                                    bool(info["dense"]), int(info["features"])))
        elif kind == "linear":
            layers.append(LayerSpec(name, int(info["in_features"]), int(info["out_features"])))
    return levels, layers, int(model.grid.log2T)


def trace_windows(n: int, trace_samples: int, windows: int, warmup: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices of `windows` windows of consecutive samples, and which of them are counted."""
    if n <= trace_samples:
        idx = np.arange(n)
        counted = np.ones(n, bool)
        counted[: int(n * warmup)] = False
        return idx, counted
    length = trace_samples // windows
    starts = np.sort(rng.choice(n - length + 1, size=windows, replace=False))
    idx = np.concatenate([np.arange(s, s + length) for s in starts])
    counted = np.tile(np.arange(length) >= int(length * warmup), windows)
    return idx, counted


def workload_from_frame(model, grid, c2w, meta: dict, dt: float, max_steps: int, name: str = "frame",
                        trace_samples: int = 8192, windows: int = 8, warmup: float = 0.25,
                        seed: int = 0) -> Workload:
    """One frame's workload: every sample after occupancy skipping, and a sampled cache trace."""
    import torch

    from hero.nerf.render import frame_samples

    s = frame_samples(grid, c2w, meta, dt, max_steps)
    n_rays = meta["height"] * meta["width"]
    per_ray = torch.bincount(s.ray_ids, minlength=n_rays).cpu().numpy()
    rng = np.random.default_rng(seed)
    idx, counted = trace_windows(len(s), trace_samples, windows, warmup, rng)
    with torch.no_grad():
        x = model.normalize(s.positions[torch.as_tensor(idx, dtype=torch.long)]).clamp(0, 1 - 2**-17)
    levels, layers, log2t = units_from_model(model)
    return Workload(name, meta["height"], meta["width"], len(s), log2t, levels, layers,
                    hash_position(x.cpu().numpy()), counted, per_ray)


def save(workload: Workload, path) -> None:
    """The per-scene preparation, kept for later queries (npz, written atomically)."""
    import json
    from dataclasses import asdict

    from hero import atomic

    meta = {"name": workload.name, "height": workload.height, "width": workload.width,
            "n_samples": workload.n_samples, "log2t": workload.log2t,
            "levels": [asdict(x) for x in workload.levels], "layers": [asdict(x) for x in workload.layers]}
    with atomic.open_write(path) as f:
        np.savez_compressed(f, meta=json.dumps(meta), trace_pos=workload.trace_pos,
                            trace_counted=workload.trace_counted, samples_per_ray=workload.samples_per_ray)


def load(path) -> Workload:
    import json

    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return Workload(meta["name"], meta["height"], meta["width"], meta["n_samples"], meta["log2t"],
                        [LevelSpec(**x) for x in meta["levels"]], [LayerSpec(**x) for x in meta["layers"]],
                        z["trace_pos"], z["trace_counted"], z["samples_per_ray"])
