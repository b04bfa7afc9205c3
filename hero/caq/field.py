"""The NeRF with CAQ's 15 quantizers, and how their bit widths map onto the accelerator's policy.

CAQ's placement (its public code, on the same network shape as ours):

| # | quantizer | kind | in P as a weight | policy entry |
|---|---|---|---|---|
| 1 | hash table (all levels: one width) | other | yes | tables, every level |
| 2 | hash-grid output | other | | activations.density.fc0 (8: fixed, the HEU's s8) |
| 3 | density.fc0 weights | weight | yes | weights.density.fc0 |
| 4 | density ReLU output | relu | | activations.density.fc1 |
| 5 | density.fc1 weights | weight | yes | weights.density.fc1 |
| 6 | density.fc1 output | other | | activations.color.fc0 (shares its bit with 8) |
| 7 | density exp output | relu | (its own weight 1) | host |
| 8 | SH encoding output | other | | activations.color.fc0 (shares its bit with 6) |
| 9 | color.fc0 weights | weight | yes | weights.color.fc0 |
| 10 | color ReLU 0 output | relu | | activations.color.fc1 |
| 11 | color.fc1 weights | weight | yes | weights.color.fc1 |
| 12 | color ReLU 1 output | relu | | activations.color.fc2 |
| 13 | color.fc2 weights | weight | yes | weights.color.fc2 |
| 14 | sigmoid input | other | | host |
| 15 | sigmoid output | other | | host |

Where the hardware forces a change (docs/caq.md): bits of every quantizer that maps onto the
accelerator are kept in [2, 8] (the engine's widest weight, and its activation lanes); the hash
grid's output is the HEU's s8 and stays at 8 bits; the geometry features and the SH values enter
color.fc0 in one lane format, so quantizers 6 and 8 share one soft bit. The host-side quantizers
(7, 14, 15) keep CAQ's [2, 64]. Nothing here knows which bits cost cycles.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from hero.intarith import ACT_BITS, MAX_WBITS, MIN_WBITS
from hero.nerf.model import trunc_exp
from hero.quant.policy import FIRST_LAYER, Policy
from hero.quant.qnerf import encode_with

from .quantizer import Quantizer, SoftBit

HOST_MAX_BITS = 64  # CAQ's upper clamp, kept for the quantizers that stay on the host
INIT_BITS = 8  # CAQ starts every quantizer at 8 bits...
EXP_INIT_BITS = 24  # ...except the density's exp output (Qexp's bw_qo in CAQ's code)
#: CAQ's penalty weights: P = (W_WEIGHT * sum(weight bits) + W_EXP * exp bits + sum(all bits)) / norm
W_WEIGHT, W_EXP = 0.3, 1.0


@dataclass(frozen=True)
class Slot:
    """One of CAQ's quantizers: its name, kind, and what its bit width is in the policy."""

    name: str
    kind: str
    weight: bool = False  # counted in P's weight term (CAQ's 'qw' quantizers: the table and the weights)
    exp: bool = False  # the density's exp output (its own term in P)
    policy: tuple[str, str] | None = None  # (section, unit) in the hardware policy, or None (host)


def slots(model) -> list[Slot]:
    layers = [n for n, k, _ in model.quant_units() if k == "linear"]
    d0, d1, c0, c1, c2 = layers
    return [
        Slot("grid.table", "other", weight=True, policy=("tables", "*")),
        Slot("grid.output", "other", policy=("activations", FIRST_LAYER)),
        Slot(f"{d0}.weight", "weight", weight=True, policy=("weights", d0)),
        Slot(f"{d0}.relu", "relu", policy=("activations", d1)),
        Slot(f"{d1}.weight", "weight", weight=True, policy=("weights", d1)),
        Slot(f"{d1}.output", "other", policy=("activations", c0)),
        Slot("density.exp", "relu", exp=True),
        Slot("sh.output", "other", policy=("activations", c0)),
        Slot(f"{c0}.weight", "weight", weight=True, policy=("weights", c0)),
        Slot(f"{c0}.relu", "relu", policy=("activations", c1)),
        Slot(f"{c1}.weight", "weight", weight=True, policy=("weights", c1)),
        Slot(f"{c1}.relu", "relu", policy=("activations", c2)),
        Slot(f"{c2}.weight", "weight", weight=True, policy=("weights", c2)),
        Slot("sigmoid.input", "other"),
        Slot("sigmoid.output", "other"),
    ]


class CAQField(nn.Module):
    """A copy of the float model with CAQ's quantizers; forward_sh(positions, sh) -> (sigma, rgb)."""

    def __init__(self, model):
        super().__init__()
        self.model = copy.deepcopy(model)
        self.aabb = self.model.aabb
        self.slots = slots(model)
        bits: dict[str, SoftBit] = {}
        quantizers = {}
        for s in self.slots:
            key = "lane:" + s.policy[1] if s.policy and s.policy[0] == "activations" else s.name
            if key not in bits:
                if s.policy is None:
                    bits[key] = SoftBit(EXP_INIT_BITS if s.exp else INIT_BITS, MIN_WBITS, HOST_MAX_BITS)
                elif s.policy == ("activations", FIRST_LAYER):
                    bits[key] = SoftBit(ACT_BITS, ACT_BITS, ACT_BITS, trainable=False)
                else:
                    bits[key] = SoftBit(INIT_BITS, MIN_WBITS, MAX_WBITS)
            quantizers[s.name.replace(".", "_")] = Quantizer(s.kind, bits[key])
        self.q = nn.ModuleDict(quantizers)
        self.bit_modules = list({id(b): b for b in bits.values()}.values())

    def quantizer(self, name: str) -> Quantizer:
        return self.q[name.replace(".", "_")]

    # -- parameter groups (CAQ's three optimizers) ------------------------------------------------------
    def bit_parameters(self) -> list[nn.Parameter]:
        return [b.value for b in self.bit_modules if b.value.requires_grad]

    def range_parameters(self) -> list[nn.Parameter]:
        return [p for q in self.q.values() for p in (q.range, q.vmax) if p is not None]

    def model_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def project_bits(self) -> None:
        for b in self.bit_modules:
            b.project()

    def calibrating(self, on: bool) -> None:
        for q in self.q.values():
            q.calibrating = on

    # -- forward -----------------------------------------------------------------------------------------
    def _linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return x @ self.quantizer(f"{name}.weight")(self.model.unit(name).weight).t()

    def forward_sh(self, positions: torch.Tensor, sh: torch.Tensor):
        m, q = self.model, self.quantizer
        emb = q("grid.table")(m.grid.embeddings)
        e = q("grid.output")(encode_with(m.grid, m.normalize(positions), emb))
        h = q("density.fc0.relu")(torch.relu(self._linear("density.fc0", e)))
        h = q("density.fc1.output")(self._linear("density.fc1", h))
        sigma = q("density.exp")(trunc_exp(h[:, 0]))
        c = torch.cat([h[:, 1:], q("sh.output")(sh)], -1)
        c = q("color.fc0.relu")(torch.relu(self._linear("color.fc0", c)))
        c = q("color.fc1.relu")(torch.relu(self._linear("color.fc1", c)))
        rgb = q("sigmoid.output")(torch.sigmoid(q("sigmoid.input")(self._linear("color.fc2", c))))
        return sigma, rgb

    # -- what CAQ reports --------------------------------------------------------------------------------
    def hard_bits(self) -> dict[str, int]:
        return {s.name: self.quantizer(s.name).bit.bits() for s in self.slots}

    def penalty(self) -> torch.Tensor:
        """CAQ's bit penalty P: a hand-weighted mean of the (straight-through rounded) bit widths."""
        total, norm = 0.0, 0.0
        for s in self.slots:
            b = self.quantizer(s.name).bit.hard()
            w = 1.0 + (W_WEIGHT if s.weight else 0.0) + (W_EXP if s.exp else 0.0)
            total, norm = total + w * b, norm + w
        return total / norm

    def mean_bits(self) -> float:
        """CAQ's FQR: the mean hard bit width of its quantizers."""
        b = self.hard_bits()
        return sum(b.values()) / len(b)

    def policy(self) -> Policy:
        """The learned widths as a hardware policy (hero-policy/1)."""
        pol = Policy.uniform(self.model, INIT_BITS)
        for s in self.slots:
            if s.policy is None:
                continue
            section, unit = s.policy
            bits = self.quantizer(s.name).bit.bits()
            target = getattr(pol, section)
            for name in (target if unit == "*" else [unit]):
                target[name] = bits
        return pol

    def size_bits(self) -> int:
        """CAQ's model size: hash table entries x F at the table width, plus every weight at its width."""
        b = self.hard_bits()
        g = self.model.grid
        size = g.embeddings.numel() * b["grid.table"]
        for name, kind, info in self.model.quant_units():
            if kind == "linear":
                size += info["params"] * b[f"{name}.weight"]
        return size

    def bitops(self, samples_per_ray: float, rays: int) -> float:
        """CAQ's BitOps of one image (multiplications only), in units of 1e12: trilinear interpolation
        at 32-bit coordinates, every MLP layer's inputs x outputs x input bits x weight bits, and volume
        rendering. (CAQ's code counts color.fc0's 15 geometry inputs only; its 16 SH inputs are counted
        here too.)"""
        b = self.hard_bits()
        g = self.model.grid
        coord = 32
        per_point = 3 * coord * coord + g.levels * g.features * ((4 + 8) * coord * coord + 8 * coord * b["grid.table"])
        inputs = {"density.fc0": [(g.output_dim, b["grid.output"])],
                  "density.fc1": [(self.model.density.fc0.out_features, b["density.fc0.relu"])],
                  "color.fc0": [(self.model.density.fc1.out_features - 1, b["density.fc1.output"]),
                                (16, b["sh.output"])],
                  "color.fc1": [(self.model.color.fc0.out_features, b["color.fc0.relu"])],
                  "color.fc2": [(self.model.color.fc1.out_features, b["color.fc1.relu"])]}
        for name, ins in inputs.items():
            out = self.model.unit(name).out_features
            per_point += sum(k * out * bi * b[f"{name}.weight"] for k, bi in ins)
        n = samples_per_ray
        sigma_bits, color_bits = b["density.exp"], b["sigmoid.output"]
        per_ray = per_point * n + sigma_bits * n * (n - 1) / 2 + n * sigma_bits * color_bits
        return per_ray * rays / 1e12
