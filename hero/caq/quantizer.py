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
rounded with a straight-through gradient: d out/d soft_bit = d out/dB at the hard bit. These are
the derivatives of the forward with round(x/s) and the zero point's rounding passed straight
through; the custom backward computes them from masks and sums (one pass over the values), and
tests/test_caq.py checks them against finite differences of the forward with its roundings frozen.

One deviation, documented in docs/caq.md: CAQ's code keeps the calibrated max of a ReLU quantizer
beside its trained range and uses it for the backward's clipping mask; here the trained range serves
both, so the backward is the derivative of the forward (d out/dR = 1 on clipped values, where CAQ's
code gives 1 - max/R, which is 0 at initialisation).
"""

from __future__ import annotations

import math

import torch
from torch import nn

KINDS = ("weight", "relu", "other")


def _ste(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` in the forward pass, the gradient of x in the backward pass."""
    return x + (value - x).detach()


class _FakeQuantize(torch.autograd.Function):
    """CAQ's fake quantization with its custom backward (the formulas of this module's docstring).

    The backward needs only per-element masks and sums: the gradient of a range or a bit is the sum
    over the elements inside the range of g * (round(x/s) - x/s) times a constant, plus the sums of g
    over the elements clipped high and low times the clipping bound's derivative."""

    @staticmethod
    def forward(ctx, x, rng, bits, vmax, kind):
        levels = 2.0 ** bits - 1.0
        s = rng / levels
        v = x / s
        r = torch.round(v)
        if kind == "weight":
            lo, hi, z = -(levels + 1.0) / 2.0, (levels + 1.0) / 2.0 - 1.0, torch.zeros_like(levels)
        elif kind == "relu":
            lo, hi, z = torch.zeros_like(levels), levels, torch.zeros_like(levels)
        else:
            lo, hi, z = torch.zeros_like(levels), levels, torch.round((1.0 - vmax / rng) * levels)
        n = r + z
        high, low = n > hi, n < lo
        q = torch.minimum(torch.maximum(n, lo), hi)
        ctx.save_for_backward(r - v, high, low, rng, bits, vmax, z)
        ctx.kind = kind
        return (q - z) * s

    @staticmethod
    def backward(ctx, g):
        frac, high, low, rng, bits, vmax, z = ctx.saved_tensors
        kind = ctx.kind
        ln2, two_b = math.log(2.0), 2.0 ** bits
        levels = two_b - 1.0
        s = rng / levels
        ds_db = -s * two_b * ln2 / levels
        g_mid = g.masked_fill(high | low, 0.0)
        mid_sum = (g_mid * frac).sum()  # sum over the range of g (round(x/s) - x/s)
        g_high, g_low = (g * high).sum(), (g * low).sum()
        if kind == "weight":
            lo, hi = -two_b / 2.0, two_b / 2.0 - 1.0
            clipped = g_high * hi + g_low * lo  # sum of g q over the clipped elements
            d_rng = (mid_sum + clipped) / levels
            d_bits = ds_db * (mid_sum + clipped) + s * (g_high - g_low) * two_b / 2.0 * ln2
            d_vmax = None
        elif kind == "relu":
            d_rng = (mid_sum + g_high * levels) / levels
            d_bits = ds_db * (mid_sum + g_high * levels) + s * g_high * two_b * ln2
            d_vmax = None
        else:
            clipped = g_high * (levels - z) - g_low * z  # sum of g (q - z) over the clipped elements
            g_out = g_high + g_low
            d_rng = (mid_sum + clipped) / levels - g_out * vmax / rng
            d_bits = (ds_db * (mid_sum + clipped) + s * g_high * two_b * ln2
                      - s * g_out * (1.0 - vmax / rng) * two_b * ln2)
            d_vmax = g_out
        return g_mid, d_rng, d_bits, d_vmax, None


def fake_quantize(x: torch.Tensor, kind: str, rng: torch.Tensor, bits: torch.Tensor,
                  vmax: torch.Tensor | None = None) -> torch.Tensor:
    """CAQ's fake quantization of x at `bits` (a hard bit width carrying a straight-through gradient)."""
    if kind not in KINDS:
        raise ValueError(f"quantizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if vmax is None:
        vmax = torch.zeros_like(rng)
    return _FakeQuantize.apply(x, rng, bits, vmax, kind)


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
