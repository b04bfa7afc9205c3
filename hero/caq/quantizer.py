"""CAQ's quantizer: a trainable soft bit width and a trainable range (Liu et al., ECCV 2024).

One quantizer maps x to s * (q - z) with step s = R / (2^B - 1), where R is the trainable range and
B = round(soft_bit) is the hard bit width. Three kinds, as in CAQ:

| kind | integers q | zero point z | trainable |
|---|---|---|---|
| `weight` | clamp(round(x/s), -2^(B-1), 2^(B-1) - 1) | 0 | R (initialised to 2 max abs(W)), bits |
| `relu` | clamp(round(x/s), 0, 2^B - 1) | 0 | R (calibrated max), bits |
| `other` | clamp(round(x/s) + z, 0, 2^B - 1) | round((1 - v_max/R)(2^B - 1)) | R, v_max (calibrated), bits |

The backward is CAQ's: straight-through through round(x/s) and through the zero point's rounding,
and exact elsewhere, so that for a value inside the range

    d out/dR = round(x/s)/(2^B - 1) - x/R,      d out/dB = (ds/dB) (round(x/s) - x/s),
    ds/dB = -s 2^B ln2 / (2^B - 1),

and for a clipped value the derivative of the clipping bound (for `weight`: (2^(B-1) - 1)/(2^B - 1)
on R; for `other`: CAQ's -v_max/R - z/(2^B - 1) and 1 - v_max/R - z/(2^B - 1)). The bit itself is
rounded with a straight-through gradient: d out/d soft_bit = d out/dB at the hard bit. Writing the
forward with those straight-through terms lets autograd produce exactly these formulas
(tests/test_caq.py checks them against finite differences of the same forward with its roundings
frozen).

One deviation, documented in docs/caq.md: CAQ's code keeps the calibrated max of a ReLU quantizer
beside its trained range and uses it for the backward's clipping mask; here the trained range serves
both, so the backward is the derivative of the forward (d out/dR = 1 on clipped values, where CAQ's
code gives 1 - max/R, which is 0 at initialisation).
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("weight", "relu", "other")


def _ste(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` in the forward pass, the gradient of x in the backward pass."""
    return x + (value - x).detach()


def fake_quantize(x: torch.Tensor, kind: str, rng: torch.Tensor, bits: torch.Tensor,
                  vmax: torch.Tensor | None = None) -> torch.Tensor:
    """CAQ's fake quantization of x at `bits` (a hard bit width carrying a straight-through gradient)."""
    levels = 2.0 ** bits - 1.0  # 2^B - 1
    s = rng / levels
    n = _ste(x / s, torch.round(x / s))
    if kind == "weight":
        half = (levels + 1.0) / 2.0
        return s * torch.minimum(torch.maximum(n, -half), half - 1.0)
    if kind == "relu":
        return s * torch.minimum(n.clamp(min=0.0), levels)
    if kind != "other":
        raise ValueError(f"quantizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
    zc = (1.0 - vmax / rng) * levels
    z = _ste(zc, torch.round(zc))
    return s * (torch.minimum((n + z).clamp(min=0.0), levels) - z)


class SoftBit(nn.Module):
    """A real-valued bit width, kept in [lo, hi]; `hard()` rounds it with a straight-through gradient.
    Two quantizers may share one (the hardware gives them one lane width)."""

    def __init__(self, init: float, lo: float, hi: float, trainable: bool = True):
        super().__init__()
        self.lo, self.hi = float(lo), float(hi)
        self.value = nn.Parameter(torch.tensor(float(init)), requires_grad=trainable)

    def project(self) -> None:
        with torch.no_grad():
            self.value.clamp_(self.lo, self.hi)

    def hard(self) -> torch.Tensor:
        v = self.value.clamp(self.lo, self.hi)
        return _ste(v, torch.round(v))

    def bits(self) -> int:
        return int(round(min(max(float(self.value.detach()), self.lo), self.hi)))


class Quantizer(nn.Module):
    """One of CAQ's quantizers. While `calibrating`, forward first widens the range to the values it
    sees (grow-only min/max, as CAQ's PTQ pass) and then quantizes with it."""

    def __init__(self, kind: str, bit: SoftBit):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"quantizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind, self.bit = kind, bit
        self.range = nn.Parameter(torch.tensor(0.0))
        self.vmax = nn.Parameter(torch.tensor(0.0)) if kind == "other" else None
        self.register_buffer("seen", torch.tensor([float("inf"), float("-inf")]))  # min, max observed
        self.calibrating = False

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        if not (torch.isfinite(torch.tensor(lo)) and torch.isfinite(torch.tensor(hi))):
            return
        self.seen[0], self.seen[1] = min(float(self.seen[0]), lo), max(float(self.seen[1]), hi)
        if self.kind == "weight":
            self.range.fill_(max(2.0 * max(abs(float(self.seen[0])), abs(float(self.seen[1]))), 1e-8))
        elif self.kind == "relu":
            self.range.fill_(max(float(self.seen[1]), 1e-8))
        else:
            self.vmax.fill_(float(self.seen[1]))
            self.range.fill_(max(float(self.seen[1] - self.seen[0]), 1e-8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.observe(x)
        return fake_quantize(x, self.kind, self.range, self.bit.hard(), self.vmax)
