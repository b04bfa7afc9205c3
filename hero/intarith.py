"""The accelerator's integer arithmetic, defined once.

This module is the contract between the quantized NeRF, the cocotb reference models and the cycle
model's workload: the RTL must match it bit for bit. docs/arithmetic.md is its readable
specification; keep the two in step.

Every function takes whole batches: numpy integer arrays or torch integer tensors (CPU or CUDA),
and returns the same kind. All intermediate values are int64, which holds every value defined here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# Number formats
# ---------------------------------------------------------------------------------------------

ACT_BITS = 8  # activation lane width of the MLP engine
MIN_WBITS = 2  # narrowest weight the bit-serial PE accepts
MAX_WBITS = 8  # default widest weight (the RTL's `max_wbits` parameter)
ACC_BITS = 32  # default accumulator width (the RTL's `acc_bits` parameter)
REQ_MULT_BITS = 16  # requantization multiplier: unsigned, 1 .. 2**16 - 1
REQ_SHIFT_BITS = 6  # requantization shift: 0 .. 63


class FormatError(ValueError):
    """A value or parameter outside the formats this module defines."""


@dataclass(frozen=True)
class IntFormat:
    """A fixed-width integer: `bits` wide, two's complement when `signed`."""

    bits: int
    signed: bool

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 62:
            raise FormatError(f"IntFormat bits must be an int in 1..62, got {self.bits!r}")

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}"

    def check(self, a, what: str = "value"):
        """Return `a` as int64 after checking that every element is representable."""
        a = _as_int64(a)
        if _numel(a) and (int(a.min()) < self.min or int(a.max()) > self.max):
            raise FormatError(
                f"{what} out of range for {self}: [{int(a.min())}, {int(a.max())}] "
                f"not within [{self.min}, {self.max}]"
            )
        return a

    def saturate(self, a):
        return _clip(_as_int64(a), self.min, self.max)

    def encode(self, a):
        """Two's complement bit pattern of each element, as a non-negative int64 (for RTL ports)."""
        return self.check(a) & ((1 << self.bits) - 1)

    def decode(self, raw):
        """Inverse of `encode`: a raw `bits`-wide pattern back to its value."""
        raw = _as_int64(raw) & ((1 << self.bits) - 1)
        if self.signed:
            raw = raw - ((raw >> (self.bits - 1)) << self.bits)
        return raw


def weight_format(wbits: int) -> IntFormat:
    """Weights: signed two's complement, `wbits` in MIN_WBITS..MAX_WBITS."""
    check_wbits(wbits)
    return IntFormat(wbits, signed=True)


def act_format(bits: int = ACT_BITS, signed: bool = False) -> IntFormat:
    """Activations: unsigned after a fused ReLU, signed for a first layer's inputs."""
    if not isinstance(bits, int) or not 2 <= bits <= ACT_BITS:
        raise FormatError(f"activation bits must be an int in 2..{ACT_BITS}, got {bits!r}")
    return IntFormat(bits, signed)


def check_wbits(wbits: int, max_wbits: int = MAX_WBITS) -> int:
    if not isinstance(wbits, (int, np.integer)) or not MIN_WBITS <= int(wbits) <= max_wbits:
        raise FormatError(f"weight bits must be an int in {MIN_WBITS}..{max_wbits}, got {wbits!r}")
    return int(wbits)


# ---------------------------------------------------------------------------------------------
# Bit-serial multiply-accumulate
# ---------------------------------------------------------------------------------------------


def weight_bitplanes(w, wbits: int):
    """Bit planes of signed weights, most significant (the sign bit) first.

    Returns shape (wbits, *w.shape) of 0/1. Plane 0 carries weight -2**(wbits-1); plane j > 0
    carries +2**(wbits-1-j). This is the order in which the PE array receives weight bits.
    """
    raw = weight_format(wbits).encode(w)
    planes = [(raw >> (wbits - 1 - j)) & 1 for j in range(wbits)]
    return _stack(planes)


def bitserial_matmul(x, w, wbits: int, act: IntFormat | None = None):
    """Y = X . W computed the way each BitSerialPE does it: MSB-first Horner over weight bits.

    x: (..., K) activations; w: (K, C) weights of `wbits` bits. Per output and per k the PE forms
    p = -x*b[0], then p = 2*p + x*b[j] for j = 1 .. wbits-1, and adds p to its accumulator.
    """
    x = _as_int64(x) if act is None else act.check(x, "activation")
    planes = weight_bitplanes(w, wbits)
    partial = -(x @ planes[0])
    for j in range(1, wbits):
        partial = 2 * partial + x @ planes[j]
    return partial


def matmul(x, w):
    """Exact integer X . W in int64. Equal to `bitserial_matmul` for every valid input (tested)."""
    return _as_int64(x) @ _as_int64(w)


def max_abs_product(act: IntFormat, wbits: int) -> int:
    """Largest |x*w| for activations in `act` and weights of `wbits` bits."""
    wf = weight_format(wbits)
    return max(abs(act.min), abs(act.max)) * max(abs(wf.min), abs(wf.max))


def max_k_without_overflow(acc_bits: int = ACC_BITS, act: IntFormat | None = None,
                           wbits: int = MAX_WBITS) -> int:
    """Longest reduction K whose worst-case sum still fits a signed `acc_bits` accumulator."""
    act = act or act_format(ACT_BITS, signed=False)
    return ((1 << (acc_bits - 1)) - 1) // max_abs_product(act, wbits)


def acc_bits_required(k: int, act: IntFormat, wbits: int) -> int:
    """Smallest signed accumulator width that never overflows for a reduction of length k."""
    bound = k * max_abs_product(act, wbits)
    return bound.bit_length() + 1


# ---------------------------------------------------------------------------------------------
# Requantization: integer multiplier and shift, rounding, saturation, fused ReLU
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requant:
    """Per-layer requantization y = sat(floor((acc * mult + 2**(shift-1)) / 2**shift)).

    Rounding is half up (toward +inf), the cheapest rounding in hardware: add half, shift right
    arithmetically. With `relu` the output saturates to unsigned [0, 2**out_bits - 1] (the ReLU is
    the clamp's lower bound, fused); without, to signed [-2**(out_bits-1), 2**(out_bits-1) - 1].
    """

    mult: int
    shift: int
    relu: bool = True
    out_bits: int = ACT_BITS

    def __post_init__(self):
        if not isinstance(self.mult, (int, np.integer)) or not 1 <= self.mult < (1 << REQ_MULT_BITS):
            raise FormatError(f"requant mult must be an int in 1..{(1 << REQ_MULT_BITS) - 1}, "
                                   f"got {self.mult!r}")
        if not isinstance(self.shift, (int, np.integer)) or not 0 <= self.shift < (1 << REQ_SHIFT_BITS):
            raise FormatError(f"requant shift must be an int in 0..{(1 << REQ_SHIFT_BITS) - 1}, "
                                   f"got {self.shift!r}")
        act_format(self.out_bits)  # validates out_bits

    @property
    def out_format(self) -> IntFormat:
        return act_format(self.out_bits, signed=not self.relu)

    @property
    def scale(self) -> float:
        return self.mult / float(1 << self.shift)

    @classmethod
    def from_scale(cls, scale: float, relu: bool = True, out_bits: int = ACT_BITS) -> Requant:
        """The (mult, shift) pair closest to a real scale, with mult normalised to 16 bits."""
        mult, shift = quantize_multiplier(scale)
        return cls(mult, shift, relu, out_bits)


def quantize_multiplier(scale: float) -> tuple[int, int]:
    """Approximate a positive real scale by mult / 2**shift, mult < 2**16, as precisely as fits."""
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise FormatError(f"requant scale must be a finite positive number, got {scale!r}")
    max_shift = (1 << REQ_SHIFT_BITS) - 1
    shift = REQ_MULT_BITS - 1 - math.floor(math.log2(scale))
    shift = min(shift, max_shift)
    if shift < 0:
        raise FormatError(f"requant scale {scale} is too large (max {(1 << REQ_MULT_BITS) - 1})")
    mult = round(scale * (1 << shift))
    if mult >= 1 << REQ_MULT_BITS:  # rounding carried into bit 16
        mult, shift = (mult + 1) >> 1, shift - 1
    if mult == 0:
        raise FormatError(f"requant scale {scale} is too small to represent (min 2**-{max_shift})")
    return int(mult), int(shift)


def requantize(acc, rq: Requant):
    """Accumulators to the next layer's activations, exactly as the engine's Requantizer does."""
    acc = _as_int64(acc)
    prod = acc * int(rq.mult)
    if rq.shift:
        prod = (prod + (1 << (rq.shift - 1))) >> rq.shift
    return rq.out_format.saturate(prod)


def linear_layer(x, w, wbits: int, rq: Requant | None, act: IntFormat, acc_bits: int = ACC_BITS):
    """One MLP-engine layer: bit-serial MAC, overflow check, then requantization when given."""
    acc = bitserial_matmul(x, w, wbits, act)
    IntFormat(acc_bits, True).check(acc, "accumulator")
    return acc if rq is None else requantize(acc, rq)


# ---------------------------------------------------------------------------------------------
# numpy / torch dispatch
# ---------------------------------------------------------------------------------------------


def _is_torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def _as_int64(a):
    if _is_torch(a):
        import torch

        if a.is_floating_point() or a.is_complex():
            raise FormatError(f"expected an integer tensor, got {a.dtype}")
        return a.to(torch.int64)
    a = np.asarray(a)
    if a.dtype.kind not in "biu":
        raise FormatError(f"expected an integer array, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _numel(a) -> int:
    return a.numel() if _is_torch(a) else a.size


def _clip(a, lo: int, hi: int):
    return a.clamp(lo, hi) if _is_torch(a) else np.clip(a, lo, hi)


def _stack(arrays):
    if _is_torch(arrays[0]):
        import torch

        return torch.stack(arrays)
    return np.stack(arrays)
