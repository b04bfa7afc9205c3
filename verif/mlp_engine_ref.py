"""Reference model and stimulus for the MLP engine, built on hero.intarith (the contract)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hero import intarith as ia


@dataclass(frozen=True)
class Tile:
    """One tile's operands and configuration, as the engine's ports take them."""

    x: np.ndarray  # (R, K) activations
    w: np.ndarray  # (K, C) weights
    wbits: int
    act_signed: bool
    rq: ia.Requant

    @property
    def k(self) -> int:
        return self.x.shape[1]

    @property
    def act(self) -> ia.IntFormat:
        return ia.act_format(ia.ACT_BITS, self.act_signed)

    def beats(self) -> list[tuple[list[int], int]]:
        """The operand stream: per k, per weight bit MSB first, (raw x lanes, packed bit plane)."""
        x_raw = self.act.encode(self.x)  # (R, K)
        planes = ia.weight_bitplanes(self.w, self.wbits)  # (wbits, K, C)
        col_weights = 1 << np.arange(self.w.shape[1], dtype=np.int64)
        packed = (planes * col_weights).sum(axis=-1)  # (wbits, K)
        return [([int(v) for v in x_raw[:, k]], int(packed[j, k]))
                for k in range(self.k) for j in range(self.wbits)]

    def expected_acc(self) -> np.ndarray:
        return ia.bitserial_matmul(self.x, self.w, self.wbits, self.act)

    def expected_q(self) -> np.ndarray:
        """Requantized outputs as the act_bits-wide patterns the `q` lanes carry."""
        q = ia.requantize(self.expected_acc(), self.rq)
        return ia.IntFormat(ia.ACT_BITS, signed=True).encode(q) if not self.rq.relu else q


def random_tile(rng: np.random.Generator, rows: int, cols: int, k: int, wbits: int,
                act_signed: bool = False, extremes: bool = False, relu: bool | None = None) -> Tile:
    """Random operands; `extremes` draws only the format's end points (worst-case sums)."""
    act = ia.act_format(ia.ACT_BITS, act_signed)
    wf = ia.weight_format(wbits)
    if extremes:
        x = rng.choice([act.min, act.max], size=(rows, k))
        w = rng.choice([wf.min, wf.max], size=(k, cols))
    else:
        x = rng.integers(act.min, act.max + 1, size=(rows, k))
        w = rng.integers(wf.min, wf.max + 1, size=(k, cols))
    relu = bool(rng.integers(2)) if relu is None else relu
    out_bits = int(rng.integers(2, ia.ACT_BITS + 1))
    # A scale that maps the typical accumulator spread onto the output range, so that both
    # saturation and in-range rounding get exercised.
    spread = max(1.0, float(np.abs(x @ w).max()))
    scale = float(rng.uniform(0.3, 3.0)) * (1 << out_bits) / spread
    return Tile(x.astype(np.int64), w.astype(np.int64), wbits, act_signed,
                ia.Requant.from_scale(scale, relu=relu, out_bits=out_bits))
