"""Model and training presets.

paper: the Instant-NGP configuration (for a GPU). cpu: sized for 2 CPU cores — fewer hash levels and a
smaller table (so one step is cheap), N_max matched to ~200-400 px views, a coarser occupancy grid and
fewer rays per batch.
"""

from __future__ import annotations

import copy

PRESETS: dict[str, dict] = {
    "paper": {
        "levels": 16, "features": 2, "log2T": 19, "n_min": 16, "n_max_per_bound": 2048,
        "hidden": 64, "geo_features": 15,
        "grid_res": 128, "steps_per_ray": 1024, "rays": 4096, "max_samples": 262144,
        "lr": 1e-2, "occ_every": 16, "occ_warmup": 256, "steps": 20000,
    },
    "cpu": {
        "levels": 12, "features": 2, "log2T": 17, "n_min": 16, "n_max_per_bound": 256,
        "hidden": 64, "geo_features": 15,
        "grid_res": 64, "steps_per_ray": 384, "rays": 2048, "max_samples": 131072,
        "lr": 1e-2, "occ_every": 16, "occ_warmup": 128, "steps": 3000, "mlp_bf16": False,
    },
    "tiny": {  # tests only
        "levels": 8, "features": 2, "log2T": 14, "n_min": 8, "n_max_per_bound": 64,
        "hidden": 32, "geo_features": 15,
        "grid_res": 16, "steps_per_ray": 128, "rays": 512, "max_samples": 16384,
        "lr": 1e-2, "occ_every": 8, "occ_warmup": 32, "steps": 40,
    },
}


#: --downscale auto: the longest image side each preset trains on at most (docs/nerf.md). cpu: the 200-400 px
#: views its N_max is matched to, with room for LLFF's 504x378 images_8/; paper: Instant-NGP's 800 px lego
#: and LLFF's 1008x756 images_4/; tiny: tests.
MAX_SIDE: dict[str, int] = {"paper": 1600, "cpu": 512, "tiny": 128}


def preset(name: str, **overrides) -> dict:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = copy.deepcopy(PRESETS[name])
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg
