"""Scoring a policy: PSNR on held-out rays (fake-quant path), latency from the cycle model, size.

reward = (PSNR_q - PSNR_fp32) - latency_weight * latency_q / latency_uniform8   (objective "latency")
reward = (PSNR_q - PSNR_fp32) - latency_weight * cost_q / cost_uniform8         (objective "cost")
cost = latency x size (ms x MiB); cost efficiency = 1 / (latency x size) in fps/MiB   (docs/search.md)
"""

from __future__ import annotations

from dataclasses import dataclass

from hero.quant.heldout import held_out_rays as held_out_rays  # shared with QAT; the search imports it here
from hero.quant.heldout import rays_psnr
from hero.quant.policy import Policy
from hero.quant.qnerf import QUANTIZER, FakeQuantField, QuantizedNeRF, Ranges
from sim_py.frame import FrameModel

OBJECTIVES = ("latency", "cost")
MIB_BITS = 8 * 2**20


def cost(latency_ms: float, size_bits: float) -> float:
    """Frame latency x model size, in ms x MiB: lower is better."""
    return latency_ms * size_bits / MIB_BITS


def cost_efficiency(latency_ms: float, size_bits: float) -> float:
    """1 / (latency x size), in frames per second per MiB: higher is better (docs/search.md)."""
    return 1000.0 / cost(latency_ms, size_bits)  # 1 / (latency_s x size_MiB)


@dataclass
class Score:
    psnr: float
    latency_ms: float
    size_bits: int
    reward: float

    @property
    def cost(self) -> float:
        """Latency x size (ms x MiB): lower is better."""
        return cost(self.latency_ms, self.size_bits)

    @property
    def cost_efficiency(self) -> float:
        """1 / (latency x size) (fps / MiB): higher is better."""
        return cost_efficiency(self.latency_ms, self.size_bits)


_MEASURED: dict[tuple, tuple[float, int]] = {}  # (context, policy) -> (PSNR, size): shared by every Scorer


def _context(model, rays, ranges: Ranges) -> str:
    """What a policy's PSNR and size depend on besides the policy: model, held-out rays, calibration."""
    import hashlib

    h = hashlib.sha1(QUANTIZER.encode())
    for t in [*model.state_dict().values(), *rays]:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr((ranges.encoding, sorted(ranges.inputs.items()))).encode())
    for k in sorted(ranges.samples or {}):
        h.update(ranges.samples[k].numpy().tobytes())
    return h.hexdigest()


class Scorer:
    """Scores policies; a policy's PSNR and size are measured once per process for the same model,
    rays and calibration (searches of one scene on several presets, objectives and weights share them)."""

    def __init__(self, model, meta: dict, ranges: Ranges, rays, frame: FrameModel, latency_weight: float = 3.0,
                 objective: str = "latency"):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.objective = objective
        self.model, self.ranges = model, ranges
        self.grid, self.dt, self.max_steps, self.bg = meta["render"].render_args()
        self.rays, self.frame, self.latency_weight = rays, frame, latency_weight
        self.level_names = [n for n, k, _ in model.quant_units() if k == "hash_level"]
        self.layer_names = [n for n, k, _ in model.quant_units() if k == "linear"]
        self.psnr_fp32 = self._psnr(model)
        uniform8 = Policy.uniform(model, 8)
        self.latency8_ms = self.latency_ms(uniform8)
        if objective == "cost":
            self.cost8 = cost(self.latency8_ms, self.quantized(uniform8).size_bits()["total"])
        self.cache: dict[str, Score] = {}
        self.context = _context(model, rays, ranges)

    def _psnr(self, field) -> float:
        return rays_psnr(field, self.grid, self.rays, self.dt, self.max_steps, self.bg)

    def quantized(self, policy: Policy) -> QuantizedNeRF:
        return QuantizedNeRF(self.model, policy, self.ranges)

    def latency_ms(self, policy: Policy) -> float:
        return self.frame.query([policy.tables[n] for n in self.level_names],
                                [policy.weights[n] for n in self.layer_names]).ms

    def __call__(self, policy: Policy) -> Score:
        key = str(sorted(policy.to_dict().items()))
        if key not in self.cache:
            if (self.context, key) not in _MEASURED:
                qn = self.quantized(policy)
                _MEASURED[(self.context, key)] = (self._psnr(FakeQuantField(qn)), qn.size_bits()["total"])
            psnr, size = _MEASURED[(self.context, key)]
            lat = self.latency_ms(policy)
            self.cache[key] = Score(psnr, lat, size, self.reward(psnr, lat, size))
        return self.cache[key]

    def reward(self, psnr: float, latency_ms: float, size_bits: int) -> float:
        """The objective's reward of a policy's PSNR, latency and size (docs/search.md)."""
        w = self.latency_weight  # same evaluation order as before the cost objective: bit-identical rewards
        if self.objective == "cost":
            return (psnr - self.psnr_fp32) - w * cost(latency_ms, size_bits) / self.cost8
        return (psnr - self.psnr_fp32) - w * latency_ms / self.latency8_ms
