"""Reference model and stimulus for the MLP engine, built on hero.intarith (the contract)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hero import intarith as ia
from rtl.mlp_engine import TileConfig


@dataclass(frozen=True)
class Tile:
    """One tile: its activations X (R, K) and its configuration (weights, width, requantization)."""

    x: np.ndarray
    cfg: TileConfig

    @property
    def k(self) -> int:
        return self.x.shape[1]

    @property
    def act(self) -> ia.IntFormat:
        return ia.act_format(ia.ACT_BITS, self.cfg.act_signed)

    def beats(self) -> list[tuple[list[int], int]]:
        """The operand stream: per k, per weight bit MSB first, (raw x lanes, packed bit plane)."""
        x_raw = self.act.encode(self.x)  # (R, K)
        packed = self.cfg.plane_words()  # (K, wbits)
        return [([int(v) for v in x_raw[:, k]], int(packed[k, j]))
                for k in range(self.k) for j in range(self.cfg.wbits)]

    def expected_acc(self) -> np.ndarray:
        return ia.bitserial_matmul(self.x, self.cfg.w, self.cfg.wbits, self.act)

    def expected_q(self) -> np.ndarray:
        """Requantized outputs as the act_bits-wide patterns the `q` lanes carry."""
        return q_lanes(ia.requantize(self.expected_acc(), self.cfg.rq), self.cfg.rq.relu)


def q_lanes(q, relu: bool) -> np.ndarray:
    """Requantized values as the engine's act_bits-wide `q` lane patterns: unsigned after a fused
    ReLU, else two's complement."""
    return q if relu else ia.IntFormat(ia.ACT_BITS, signed=True).encode(q)


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
    # Per column, a scale that maps the column's accumulator spread onto the output range, so that
    # both saturation and in-range rounding get exercised.
    spread = np.maximum(1.0, np.abs(x @ w).max(axis=0))
    scale = rng.uniform(0.3, 3.0, size=cols) * (1 << out_bits) / spread
    return Tile(x.astype(np.int64), TileConfig(w.astype(np.int64), wbits, act_signed,
                                               ia.Requant.from_scale(scale, relu=relu, out_bits=out_bits)))
