"""The search environment: one step per quantizable unit, a policy per episode (docs/search.md).

Units, in dataflow order: every hash level's table, then per linear layer its weights and (except
density.fc0, whose input is the HEU's s8 output) its input activations. Each step's observation
is a vector of normalized features; the action in [0, 1] becomes a bit width in [b_min, b_max]
(HAQ's mapping). At the end of an episode the policy is fitted to the budgets (HAQ: lower bits
from the last unit to the first until it fits) and scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hero.intarith import HASH_CORNERS
from hero.quant.policy import FIRST_LAYER, Policy

#: The Policy field that holds a unit of each kind.
KIND_FIELD = {"table": "tables", "weights": "weights", "activations": "activations"}

KINDS = ("table", "weights", "activations")


@dataclass(frozen=True)
class Unit:
    name: str  # the model's stable name
    kind: str  # table | weights | activations
    index: int
    features: dict  # raw features, normalized per column over all units


def action_to_bits(a: float, b_min: int, b_max: int) -> int:
    """HAQ: round((b_max - b_min + 1) * a + b_min - 0.5), kept in range."""
    return int(min(b_max, max(b_min, round((b_max - b_min + 1) * float(a) + b_min - 0.5))))


#: The bit width at which the sensitivity feature probes each unit.
SENSITIVITY_BITS = 4


def _quant_error(x: torch.Tensor, bits: int, peak: torch.Tensor) -> torch.Tensor:
    """Symmetric round-to-nearest of x at `bits` with the scale that maps `peak` to the top code,
    minus x."""
    qmax = (1 << (bits - 1)) - 1
    scale = torch.clamp(peak, min=1e-12) / qmax
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale - x


@torch.no_grad()
def sensitivities(model, samples: dict[str, torch.Tensor],
                  bits: int = SENSITIVITY_BITS) -> dict[tuple[str, str], float]:
    """Per unit (name, kind): the energy of the perturbation that quantizing it alone to `bits`
    causes in its layer's output, over the energy of that output, on the calibration inputs
    (`samples`: hero.quant.qnerf.Ranges.samples). A table perturbs density.fc0's output through its
    level's encoding columns, at the scale of the level's table. No policy is evaluated."""
    out = {}
    f = model.grid.features
    for name in (n for n, kind, _ in model.quant_units() if kind == "linear"):
        x, w = samples[name].double(), model.unit(name).weight.detach().double().t()  # (N, K), (K, C)
        energy = max(float((x @ w).pow(2).sum()), 1e-30)
        out[(name, "weights")] = float((x @ _quant_error(w, bits, w.abs().amax(0))).pow(2).sum()) / energy
        if name != FIRST_LAYER:  # its input is the HEU's s8 output, not a unit
            out[(name, "activations")] = float((_quant_error(x, bits, x.abs().amax()) @ w).pow(2).sum()) / energy
        else:
            for lv in range(len(model.grid.params)):
                cols = slice(lv * f, (lv + 1) * f)
                de = _quant_error(x[:, cols], bits, model.grid.table(lv).detach().double().abs().amax())
                out[(f"grid.level{lv:02d}", "table")] = float((de @ w[cols]).pow(2).sum()) / energy
    return out


def units_of(model, latency_share: dict[str, float], memory_share: dict[str, float],
             sensitivity: dict[tuple[str, str], float] | None = None) -> list[Unit]:
    """The search's units with their raw features; `sensitivity` (from `sensitivities`) adds one."""
    out = []
    for name, kind, info in model.quant_units():
        if kind == "hash_level":
            out.append(Unit(name, "table", info["level"], {
                "size": info["entries"] * info["features"], "resolution": info["resolution"],
                "entries": info["entries"], "params": info["params"], "work": float(HASH_CORNERS),  # lookups a sample
                "latency": latency_share.get(name, 0.0), "memory": memory_share.get(name, 0.0)}))
        else:
            idx = len([u for u in out if u.kind == "weights"])
            feats = {"size": info["in_features"] * info["out_features"], "resolution": info["in_features"],
                     "entries": info["out_features"], "params": info["params"],
                     "work": info["in_features"] * info["out_features"],  # MACs per sample
                     "latency": latency_share.get(name, 0.0), "memory": memory_share.get(name, 0.0)}
            out.append(Unit(name, "weights", idx, feats))
            if name != FIRST_LAYER:
                out.append(Unit(name, "activations", idx, {**feats, "size": info["in_features"], "params": 0}))
    if sensitivity is not None:
        out = [Unit(u.name, u.kind, u.index, {**u.features, "sensitivity": sensitivity[(u.name, u.kind)]})
               for u in out]
    return out


class QuantEnv:
    """Episodes of len(units) steps. The scoring function is given: policy -> (reward, info)."""

    FEATURES = ("size", "resolution", "entries", "params", "work", "latency", "memory")

    def __init__(self, model, units: list[Unit], b_min: int = 2, b_max: int = 8):
        self.model, self.units, self.b_min, self.b_max = model, units, b_min, b_max
        self.features = self.FEATURES + (("sensitivity",) if all("sensitivity" in u.features for u in units) else ())
        raw = np.array([[self._scaled(f, u.features[f]) for f in self.features] for u in units], dtype=np.float64)
        lo, hi = raw.min(0), raw.max(0)
        self._norm = (raw - lo) / np.where(hi > lo, hi - lo, 1.0)
        self.obs_dim = len(KINDS) + 1 + len(self.features) + 1
        self.reset()

    @staticmethod
    def _scaled(feature: str, v: float) -> float:
        if feature in ("latency", "memory"):
            return v
        if feature == "sensitivity":  # relative energies over many decades
            return math.log10(v + 1e-12)
        return math.log1p(v)

    def reset(self) -> np.ndarray:
        self.t, self.prev, self.bits = 0, 1.0, []
        return self.observe()

    def observe(self) -> np.ndarray:
        u = self.units[min(self.t, len(self.units) - 1)]
        kind = [1.0 if u.kind == k else 0.0 for k in KINDS]
        idx = [self.t / max(len(self.units) - 1, 1)]
        return np.array(kind + idx + list(self._norm[min(self.t, len(self.units) - 1)]) + [self.prev],
                        dtype=np.float32)

    def step(self, action: float) -> tuple[np.ndarray, bool]:
        self.bits.append(action_to_bits(action, self.b_min, self.b_max))
        self.prev = float(action)
        self.t += 1
        return self.observe(), self.t == len(self.units)

    def policy(self, bits: list[int] | None = None) -> Policy:
        bits = self.bits if bits is None else bits
        pol = Policy.uniform(self.model, 8)
        for u, b in zip(self.units, bits, strict=True):
            getattr(pol, KIND_FIELD[u.kind])[u.name] = b
        return pol

    def fit_budget(self, bits: list[int], fits) -> list[int] | None:
        """HAQ: walk the units from the last to the first lowering each by one bit, checking after each
        step, and walk again until `fits(policy)`; None when even b_min everywhere does not fit."""
        bits = list(bits)
        order = [i for i in range(len(bits)) if self.units[i].kind != "activations"][::-1]
        if fits(self.policy(bits)):
            return bits
        while True:
            lowered = False
            for i in order:
                if bits[i] > self.b_min:
                    bits[i] -= 1
                    lowered = True
                    if fits(self.policy(bits)):
                        return bits
            if not lowered:
                return None
