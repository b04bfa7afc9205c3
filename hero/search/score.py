"""Scoring a policy: PSNR on held-out rays (fake-quant path), latency from the cycle model, size.

reward = (PSNR_q - PSNR_fp32) - latency_weight * latency_q / latency_uniform8      (docs/search.md)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hero.data.rays import pixel_rays
from hero.nerf.metrics import mse_to_psnr
from hero.nerf.render import camera_meta, prepare_rays, render_rays_inference
from hero.quant.policy import Policy
from hero.quant.qnerf import FakeQuantField, QuantizedNeRF, Ranges
from sim_py.frame import FrameModel


@dataclass
class Score:
    psnr: float
    latency_ms: float
    size_bits: int
    reward: float

    @property
    def cost(self) -> float:
        """Latency x size (ms x MiB): lower is better."""
        return self.latency_ms * self.size_bits / 8 / 2**20


def held_out_rays(scene, n_rays: int, seed: int = 0):
    """A fixed random set of pixels of the held-out views: origins, directions, colours."""
    rng = np.random.default_rng(seed)
    meta = camera_meta(scene)
    c2w = torch.as_tensor(np.asarray(scene.c2w), dtype=torch.float32)
    idx = torch.from_numpy(rng.integers(0, len(c2w), n_rays))
    px = torch.from_numpy(rng.integers(0, meta["width"], n_rays))
    py = torch.from_numpy(rng.integers(0, meta["height"], n_rays))
    o, d = prepare_rays(*pixel_rays(c2w[idx], px, py, meta["fx"], meta["fy"], meta["cx"], meta["cy"]), meta)
    target = torch.from_numpy(scene.images)[idx, py, px].float() / 255.0
    return o, d, target


class Scorer:
    def __init__(self, model, meta: dict, ranges: Ranges, rays, frame: FrameModel, latency_weight: float = 3.0):
        self.model, self.grid, self.ranges = model, meta["occupancy"], ranges
        self.dt, self.max_steps, self.bg = meta["dt"], meta["max_steps"], meta["background"]
        self.rays, self.frame, self.latency_weight = rays, frame, latency_weight
        self.level_names = [n for n, k, _ in model.quant_units() if k == "hash_level"]
        self.layer_names = [n for n, k, _ in model.quant_units() if k == "linear"]
        self.psnr_fp32 = self._psnr(model)
        self.latency8_ms = self.latency_ms(Policy.uniform(model, 8))
        self.cache: dict[str, Score] = {}

    @torch.no_grad()
    def _psnr(self, field) -> float:
        o, d, target = self.rays
        color = torch.cat([render_rays_inference(field, self.grid, o[i:i + 4096], d[i:i + 4096], self.dt,
                                                 self.max_steps, self.bg)[0] for i in range(0, len(o), 4096)])
        return mse_to_psnr(float(((color.clamp(0, 1) - target) ** 2).mean()))

    def quantized(self, policy: Policy) -> QuantizedNeRF:
        return QuantizedNeRF(self.model, policy, self.ranges)

    def latency_ms(self, policy: Policy) -> float:
        return self.frame.query([policy.tables[n] for n in self.level_names],
                                [policy.weights[n] for n in self.layer_names]).ms

    def __call__(self, policy: Policy) -> Score:
        key = str(sorted(policy.to_dict().items()))
        if key not in self.cache:
            qn = self.quantized(policy)
            psnr = self._psnr(FakeQuantField(qn))
            lat = self.latency_ms(policy)
            reward = (psnr - self.psnr_fp32) - self.latency_weight * lat / self.latency8_ms
            self.cache[key] = Score(psnr, lat, qn.size_bits()["total"], reward)
        return self.cache[key]
