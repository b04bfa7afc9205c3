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
WORD_BITS = 32  # default HEU table memory word width (the RTL's `word_bits` parameter)


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
    """Requantization y = sat(floor((acc * mult + 2**(shift-1)) / 2**shift)), per output channel.

    `mult` and `shift` are one int for every channel, or tuples with one entry per output channel
    (the last axis of the accumulators): per-channel weight scales need a multiplier and shift per
    channel. Rounding is half up (toward +inf), the cheapest rounding in hardware: add half, shift
    right arithmetically. With `relu` the output saturates to unsigned [0, 2**out_bits - 1] (the
    ReLU is the clamp's lower bound, fused); without, to signed [-2**(out_bits-1), 2**(out_bits-1) - 1].
    """

    mult: int | tuple[int, ...]
    shift: int | tuple[int, ...]
    relu: bool = True
    out_bits: int = ACT_BITS

    def __post_init__(self):
        per_channel = [isinstance(v, (tuple, list, np.ndarray)) for v in (self.mult, self.shift)]
        if any(per_channel):
            mult, shift = (tuple(np.atleast_1d(v).tolist()) for v in (self.mult, self.shift))
            if len(mult) != len(shift) or not mult:
                raise FormatError(f"requant mult and shift need one entry per channel, got {len(mult)} and "
                                  f"{len(shift)}")
            object.__setattr__(self, "mult", mult)
            object.__setattr__(self, "shift", shift)
        for m in np.atleast_1d(self.mult).tolist():
            if not isinstance(m, (int, np.integer)) or not 1 <= m < (1 << REQ_MULT_BITS):
                raise FormatError(f"requant mult must be an int in 1..{(1 << REQ_MULT_BITS) - 1}, got {m!r}")
        for sh in np.atleast_1d(self.shift).tolist():
            if not isinstance(sh, (int, np.integer)) or not 0 <= sh < (1 << REQ_SHIFT_BITS):
                raise FormatError(f"requant shift must be an int in 0..{(1 << REQ_SHIFT_BITS) - 1}, got {sh!r}")
        act_format(self.out_bits)  # validates out_bits

    @property
    def out_format(self) -> IntFormat:
        return act_format(self.out_bits, signed=not self.relu)

    @property
    def channels(self) -> int | None:
        """Number of per-channel entries; None when one (mult, shift) serves every channel."""
        return len(self.mult) if isinstance(self.mult, tuple) else None

    @property
    def scale(self):
        """mult / 2**shift: a float, or a float64 array with one entry per channel."""
        if self.channels is None:
            return self.mult / float(1 << self.shift)
        return np.array(self.mult, dtype=np.float64) / np.exp2(np.array(self.shift, dtype=np.float64))

    def select(self, channels) -> Requant:
        """The requantization of the given channels (a slice or indices), as the engine's columns take it."""
        if self.channels is None:
            return self
        idx = range(self.channels)[channels] if isinstance(channels, slice) else channels
        return Requant(tuple(self.mult[c] for c in idx), tuple(self.shift[c] for c in idx), self.relu, self.out_bits)

    @classmethod
    def from_scale(cls, scale, relu: bool = True, out_bits: int = ACT_BITS) -> Requant:
        """The (mult, shift) closest to a real scale, or to each of a sequence of per-channel scales,
        with mult normalised to 16 bits."""
        if isinstance(scale, (int, float, np.floating)):
            return cls(*quantize_multiplier(scale), relu, out_bits)
        pairs = [quantize_multiplier(float(v)) for v in np.asarray(scale, dtype=np.float64).reshape(-1)]
        return cls(tuple(m for m, _ in pairs), tuple(sh for _, sh in pairs), relu, out_bits)


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
    """Accumulators to the next layer's activations, exactly as the engine's Requantizer does;
    a per-channel Requant applies entry c to acc[..., c]."""
    acc = _as_int64(acc)
    if rq.channels is None:
        prod = acc * int(rq.mult)
        if rq.shift:
            prod = (prod + (1 << (rq.shift - 1))) >> rq.shift
        return rq.out_format.saturate(prod)
    if acc.shape[-1] != rq.channels:
        raise FormatError(f"requant has {rq.channels} channels, the accumulators' last axis {acc.shape[-1]}")
    mult, shift = np.array(rq.mult, dtype=np.int64), np.array(rq.shift, dtype=np.int64)
    if _is_torch(acc):
        import torch

        mult, shift = torch.from_numpy(mult).to(acc.device), torch.from_numpy(shift).to(acc.device)
    half = (1 << shift) >> 1  # 2**(shift-1), 0 for shift 0
    return rq.out_format.saturate((acc * mult + half) >> shift)


def round_half_up(x):
    """floor(x + 0.5), as float: the host's rounding of real values to an input format's integers
    (half up, as the requantizer rounds)."""
    if _is_torch(x):
        import torch

        return torch.floor(x + 0.5)
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


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


# ---------------------------------------------------------------------------------------------
# Hash encoding: the hash encoding unit's (HEU, rtl/heu.py) integer arithmetic
# ---------------------------------------------------------------------------------------------
#
# docs/arithmetic.md section 6 specifies these. Positions are u16 per coordinate (x = raw / 2**16);
# each level has a scale register (u25, 13 integer and 12 fraction bits), a resolution, a dense flag,
# an index modulus `entries`, a table width `bits` (2..8), a table base (in memory words) and a
# Requant to the common s8 output scale. The trilinear weights are exact products of per-axis
# u11 weights with 10 fraction bits, so the eight weights of a point sum to exactly 2**30.

HASH_POS_BITS = 16  # position coordinate: u16, x = raw / 2**16 in [0, 1)
HASH_SCALE_INT_BITS = 13  # scale register: integer part, scales up to 8191.99 (N_max 8192)
HASH_SCALE_FRAC_BITS = 12  # scale register: fraction bits
HASH_SCALE_BITS = HASH_SCALE_INT_BITS + HASH_SCALE_FRAC_BITS
HASH_WEIGHT_FRAC_BITS = 10  # per-axis trilinear weight: u11, 0 .. 2**10
HASH_COORD_BITS = HASH_SCALE_INT_BITS + 1  # grid corner and vertex coordinates: u14
HASH_WEIGHT_SUM = 1 << (3 * HASH_WEIGHT_FRAC_BITS)  # the eight corner weights always sum to this
HASH_MIN_BITS = MIN_WBITS  # narrowest table entry
HASH_MAX_BITS = MAX_WBITS  # widest table entry
HASH_ACC_BITS = 3 * HASH_WEIGHT_FRAC_BITS + HASH_MAX_BITS + 2  # interpolation accumulator: s40
HASH_PRIMES = (1, 2654435761, 805459861)  # tiny-cuda-nn's coherent prime hash
HASH_CORNERS = 8  # corners of a grid cell: one table lookup each per level
HASH_OUT_FORMAT = IntFormat(ACT_BITS, signed=True)  # the HEU's output features: s8
_POS_SHIFT = HASH_POS_BITS + HASH_SCALE_FRAC_BITS  # fraction bits of the scaled position


@dataclass(frozen=True)
class HashLevel:
    """One level's configuration registers, as the HEU holds them (docs/heu.md)."""

    scale: int  # scale register: real scale = scale / 2**HASH_SCALE_FRAC_BITS
    resolution: int  # grid resolution R (used by the dense index)
    dense: bool  # dense index x + y*R + z*R*R, else the spatial hash
    entries: int  # index modulus: T for hashed levels, R**3 rounded up to 8 for dense ones
    bits: int  # table entry width b_l, HASH_MIN_BITS..HASH_MAX_BITS
    base: int  # first memory word of the level's table
    rq: Requant  # interpolation accumulator -> s8 output (relu=False, out_bits=8)

    def check(self, log2t: int) -> HashLevel:
        """Raise FormatError unless the HEU computes this level as the model does."""
        t = 1 << log2t
        if not 1 <= self.scale < 1 << HASH_SCALE_BITS:
            raise FormatError(f"scale register must be in 1..{(1 << HASH_SCALE_BITS) - 1}, got {self.scale}")
        check_wbits(self.bits)
        if self.rq.relu or self.rq.out_bits != ACT_BITS or self.rq.channels is not None:
            raise FormatError(f"a level's requant must be one (mult, shift) with relu=False, out_bits={ACT_BITS}, "
                              f"got {self.rq}")
        if self.base < 0:
            raise FormatError(f"table base must be >= 0, got {self.base}")
        if self.dense:
            r = self.resolution
            if r < 2 or r**3 > t:
                raise FormatError(f"dense level needs 2 <= resolution and resolution**3 <= T={t}, got {r}")
            if not r**3 <= self.entries <= t:
                raise FormatError(f"dense level entries must be in {r**3}..{t}, got {self.entries}")
            # Vertex coordinates reach at most R, so one conditional subtraction reduces the index.
            top = (((1 << HASH_POS_BITS) - 1) * self.scale + (1 << (_POS_SHIFT - 1))) >> _POS_SHIFT
            if top + 1 > r:
                raise FormatError(f"dense level: scale register {self.scale} reaches vertex {top + 1} "
                                  f"beyond resolution {r}")
        elif self.entries != t:
            raise FormatError(f"hashed level entries must be T={t}, got {self.entries}")
        return self


def hash_scale_register(scale: float) -> int:
    """A real level scale (N_min * b**l - 1) as the u25 scale register, rounded to nearest."""
    reg = round(float(scale) * (1 << HASH_SCALE_FRAC_BITS))
    if not 1 <= reg < 1 << HASH_SCALE_BITS:
        raise FormatError(f"level scale {scale} outside the scale register's range "
                          f"(0, {(1 << HASH_SCALE_BITS) / (1 << HASH_SCALE_FRAC_BITS)})")
    return reg


def hash_grid_scales(levels: int, n_min: float, n_max: float) -> list[float]:
    """tiny-cuda-nn's real level scales N_min * b**l - 1, b = exp(ln(N_max / N_min) / (L - 1)),
    each rounded to float32 as tiny-cuda-nn computes it."""
    b = math.exp(math.log(n_max / n_min) / (levels - 1)) if levels > 1 else 1.0
    return [float(np.float32(n_min * b**lv - 1.0)) for lv in range(levels)]


def hash_level_geometry(scale: float, log2t: int) -> tuple[int, bool, int]:
    """tiny-cuda-nn's (resolution, dense, entries) for a real level scale and T = 2**log2t."""
    t = 1 << log2t
    resolution = math.ceil(scale) + 1
    dense = resolution**3 <= t
    entries = min(-(-resolution**3 // 8) * 8, t) if dense else t
    return resolution, dense, entries


def hash_level_requant(table_scale: float, out_scale: float) -> Requant:
    """Requant from the interpolation accumulator (table LSB / 2**30) to the s8 output scale."""
    return Requant.from_scale(table_scale / out_scale / HASH_WEIGHT_SUM, relu=False, out_bits=ACT_BITS)


def hash_words_per_level(entries: int, features: int, bits: int, word_bits: int) -> int:
    """Memory words of a level's table: entries of features*bits bits, bit-packed across words."""
    check_wbits(bits)
    return -(-entries * features * bits // word_bits)


def hash_levels(log2t: int, scales, bits, table_scales, out_scale: float, features: int,
                word_bits: int) -> list[HashLevel]:
    """Levels for real scales (tiny-cuda-nn's convention), tables laid out one after another."""
    levels, base = [], 0
    for scale, b, ts in zip(scales, bits, table_scales, strict=True):
        res, dense, entries = hash_level_geometry(scale, log2t)
        lv = HashLevel(hash_scale_register(scale), res, dense, entries, int(b), base,
                       hash_level_requant(ts, out_scale)).check(log2t)
        levels.append(lv)
        base += hash_words_per_level(entries, features, int(b), word_bits)
    return levels


def hash_table_words(levels, features: int, word_bits: int) -> int:
    """Memory words that the levels' tables take, each level from its base."""
    return max(lv.base + hash_words_per_level(lv.entries, features, lv.bits, word_bits) for lv in levels)


def hash_position(x):
    """Real positions in [0, 1) to u16 raw coordinates, rounding down (x = raw / 2**16)."""
    raw = np.floor(np.asarray(x, dtype=np.float64) * (1 << HASH_POS_BITS)).astype(np.int64)
    return np.clip(raw, 0, (1 << HASH_POS_BITS) - 1)


def hash_grid_position(pos, scale: int):
    """Corner (floor) and truncated fraction of pos*scale + 0.5, per coordinate.

    pos: (..., 3) u16; scale: the level's scale register. The product is exact
    (16 + 25 bits, 28 fraction bits); the fraction keeps its top HASH_WEIGHT_FRAC_BITS bits
    (truncation). Returns (corner u14, frac u10), both shaped like pos.
    """
    pos = IntFormat(HASH_POS_BITS, False).check(pos, "position")
    p = pos * int(scale) + (1 << (_POS_SHIFT - 1))
    corner = p >> _POS_SHIFT
    frac = (p >> (_POS_SHIFT - HASH_WEIGHT_FRAC_BITS)) & ((1 << HASH_WEIGHT_FRAC_BITS) - 1)
    return corner, frac


def hash_corner_offsets():
    """The eight corners' (dx, dy, dz), in the HEU's lookup order: corner c has dx = c & 1,
    dy = (c >> 1) & 1, dz = c >> 2."""
    return np.array([[c & 1, (c >> 1) & 1, c >> 2] for c in range(8)], dtype=np.int64)


def hash_trilinear_weights(frac):
    """(..., 3) u10 fractions -> (..., 8) exact corner weights, summing to HASH_WEIGHT_SUM.

    Per axis w0 = 2**10 - f, w1 = f (u11); corner c's weight is wx * wy * wz (u31), exact.
    """
    frac = _as_int64(frac)
    one = 1 << HASH_WEIGHT_FRAC_BITS
    w = []
    for c in range(8):
        wc = None
        for axis in range(3):
            f = frac[..., axis]
            wa = f if (c >> axis) & 1 else one - f
            wc = wa if wc is None else wc * wa
        w.append(wc)
    return _moveaxis0_last(_stack(w))


def grid_index(vertex, resolution: int, entries: int, dense: bool, log2t: int):
    """Table index of integer vertices (..., 3): the one definition of the index and spatial hash.

    Dense: i = x + y*R + z*R*R, minus `entries` once if i >= entries (equal to i mod entries, since
    vertices are at most R). Hashed: (x*1 ^ y*2654435761 ^ z*805459861) mod 2**32 mod T, which
    needs only the low log2t bits of each product. The float NeRF (hero.nerf.hashgrid) uses it too.
    """
    v = _as_int64(vertex)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    if dense:
        r = int(resolution)
        i = x + y * r + z * (r * r)
        return i - entries * (i >= entries)
    mask32 = (1 << 32) - 1
    h = (x * HASH_PRIMES[0]) ^ ((y * HASH_PRIMES[1]) & mask32) ^ ((z * HASH_PRIMES[2]) & mask32)
    return h & ((1 << log2t) - 1)


def hash_index(vertex, level: HashLevel, log2t: int):
    """Table index of integer vertices (..., 3) at one level, as the HEU computes it."""
    return grid_index(vertex, level.resolution, level.entries, level.dense, log2t)


def hash_interpolate(values, weights):
    """Sum over the eight corners of weight * entry: (..., 8, F) and (..., 8) -> (..., F) int64.

    The result is the interpolated feature in units of the table LSB / HASH_WEIGHT_SUM (s40)."""
    return (_as_int64(values) * _as_int64(weights)[..., None]).sum(-2)


def hash_level_acc(pos, level: HashLevel, table, log2t: int):
    """One level's interpolation accumulators: pos (N, 3) u16, table (entries, F) -> (N, F)."""
    table = weight_format(level.bits).check(table, f"{level.bits}-bit table")
    corner, frac = hash_grid_position(pos, level.scale)
    vertex = corner[..., None, :] + _like(corner, hash_corner_offsets())  # (N, 8, 3)
    idx = hash_index(vertex, level, log2t)  # (N, 8)
    return hash_interpolate(table[idx], hash_trilinear_weights(frac))


def hash_encode(pos, levels, tables, log2t: int):
    """The HEU's output: (N, 3) u16 positions -> (N, L*F) s8, lane l*F + f = level l, feature f."""
    out = [requantize(hash_level_acc(pos, lv, t, log2t), lv.rq) for lv, t in zip(levels, tables, strict=True)]
    if _is_torch(out[0]):
        import torch

        return torch.cat(out, -1)
    return np.concatenate(out, axis=-1)


def hash_pack_table(table, bits: int, word_bits: int) -> list[int]:
    """A level's table (entries, F) of `bits`-bit signed values as memory words (Python ints).

    Entry i, feature f is the `bits`-wide two's complement field at bit (i*F + f) * bits of the
    level's bit stream; bit k of the stream is bit k % word_bits of word k // word_bits.
    """
    raw = weight_format(bits).encode(table).reshape(-1)
    n_words = -(-raw.size * bits // word_bits)
    words = [0] * n_words
    for k, v in enumerate(raw.tolist()):
        off = k * bits
        w, s = divmod(off, word_bits)
        words[w] |= (v << s) & ((1 << word_bits) - 1)
        if s + bits > word_bits:
            words[w + 1] |= v >> (word_bits - s)
    return words


def hash_entry_address(idx, features: int, bits: int, word_bits: int, base: int = 0):
    """Where entry idx of a level starts: (word, bit within it). Entries are F*bits-bit fields
    packed back to back from word `base` (the HEU's S2 address stage)."""
    off = _as_int64(idx) * (features * bits)
    return base + off // word_bits, off % word_bits


def hash_unpack_entries(words, idx, features: int, bits: int, word_bits: int, base: int = 0):
    """Entries at indices idx read back from packed words the way the HEU does: the two words
    from base + (idx*F*bits) // word_bits, shifted, each feature sign-extended. -> (..., F) int64."""
    idx = np.asarray(idx, dtype=np.int64)
    w, s = hash_entry_address(idx, features, bits, word_bits, base)
    mem = list(words) + [0]
    out = np.zeros(idx.shape + (features,), dtype=np.int64)
    for pos in np.ndindex(idx.shape):
        pair = mem[w[pos]] | (mem[w[pos] + 1] << word_bits)
        entry = pair >> int(s[pos])
        for f in range(features):
            out[pos + (f,)] = (entry >> (f * bits)) & ((1 << bits) - 1)
    return weight_format(bits).decode(out)


def hash_memory_image(levels, tables, word_bits: int) -> dict[int, int]:
    """{word address: word} of all levels' packed tables, for the HEU's table write port."""
    image = {}
    for lv, t in zip(levels, tables, strict=True):
        for i, word in enumerate(hash_pack_table(t, lv.bits, word_bits)):
            if lv.base + i in image:
                raise FormatError(f"tables overlap at word {lv.base + i}")
            image[lv.base + i] = word
    return image


def hash_interp_error_bound(bits: int) -> float:
    """Bound on |model - float trilinear encoding| of one feature, in units of the table LSB.

    The interpolant is continuous and, along each axis, Lipschitz with constant D = 2**bits - 1 (the
    widest difference of two entries). The model evaluates it exactly at a position that differs
    from x * scale + 0.5 by under 2**-10 (fraction truncation) + 2**-13 (scale register rounding,
    times x < 1) per axis, so the error is below 3 * D * (2**-10 + 2**-13).
    """
    d = (1 << check_wbits(bits)) - 1
    return 3 * d * (2.0**-HASH_WEIGHT_FRAC_BITS + 2.0 ** -(HASH_SCALE_FRAC_BITS + 1))


def hash_output_error_bound(level: HashLevel, ratio: float) -> float:
    """Bound in output LSBs on |s8 output - clamp(float encoding * ratio)|, where ratio is the
    real table-LSB-to-output-LSB factor the level's requant approximates (hash_level_requant):
    half an LSB of rounding, the interpolation bound, and the multiplier's rounding (< 2**-16)."""
    vmax = 1 << (level.bits - 1)
    rq_scale = level.rq.scale * HASH_WEIGHT_SUM
    return 0.5 + ratio * hash_interp_error_bound(level.bits) + vmax * abs(rq_scale - ratio)


def _moveaxis0_last(a):
    return a.movedim(0, -1) if _is_torch(a) else np.moveaxis(a, 0, -1)


def _like(ref, a: np.ndarray):
    """numpy constant `a` as the same kind of array as `ref` (a torch tensor on ref's device)."""
    if _is_torch(ref):
        import torch

        return torch.as_tensor(a, device=ref.device)
    return a
