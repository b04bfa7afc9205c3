"""Compute model of the core (rtl/core.py): cycles of a stream of batches, from the HEU's and the
engine's formulas.

The core holds two batches (docs/core.md): while the engine runs one batch's layers and sends its
results, the HEU encodes the next one into the other bank. Each batch's phases:
- encode: its samples enter the HEU one per 8L cycles, once the previous batch's last sample is in
  and its bank is free (the batch two before has sent its results); its last feature is written
  8L + 5 cycles after its last sample;
- layers: from the cycle after both its last feature and the previous batch's last result, every
  layer's column folds as back-to-back tiles;
- results: one per cycle from the cycle after its last tile.
"""

from __future__ import annotations

import math

from .heu import PIPELINE_STAGES, cycles_per_point
from .mlp_engine import cycles_per_tile

BANKS = 2


def tile_cycles(layers, rows: int, cols: int) -> int:
    """Engine cycles of one batch: layers as (k, c_out, wbits), ceil(c_out / C) tiles each."""
    return sum(math.ceil(c_out / cols) * cycles_per_tile(k, wbits, rows, cols) for k, c_out, wbits in layers)


def schedule(sizes, levels: int, layers, rows: int, cols: int) -> list[dict]:
    """Per batch of `sizes` (samples always offered, results taken at once): the cycles, counted
    from the first sample's handshake (cycle 0), of its first and last sample's handshake, its
    last feature, its first tile's start and its last result."""
    p, tiles = cycles_per_point(levels), tile_cycles(layers, rows, cols)
    out: list[dict] = []
    for i, n in enumerate(sizes):
        if not 1 <= n <= rows:
            raise ValueError(f"a batch holds 1..{rows} samples, got {n}")
        first = 0
        if i:
            first = out[i - 1]["last_in"] + p
        if i >= BANKS:
            first = max(first, out[i - BANKS]["last_out"] + 1)
        last_in = first + (n - 1) * p
        encoded = last_in + p + PIPELINE_STAGES
        run = max(encoded, out[i - 1]["last_out"] if i else 0) + 1
        out.append({"first_in": first, "last_in": last_in, "encoded": encoded, "run": run,
                    "last_out": run + tiles + n - 1})
    return out


def stream_cycles(sizes, levels: int, layers, rows: int, cols: int) -> int:
    """What the core's `cycles` counter reads after batches of `sizes` offered back to back, results
    taken at once: from the first sample's handshake to the last result's, both included. One
    batch alone: n * 8L + 6 + tile_cycles + n."""
    return schedule(sizes, levels, layers, rows, cols)[-1]["last_out"] + 1
