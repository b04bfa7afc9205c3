"""Compute model of the core (rtl/core.py): cycles of a stream of batches, from the HEU's and the
engine's formulas.

The core holds two batches (docs/core.md): while the engine runs one batch's layers and sends its
results, the HEU encodes the next one into the other bank. Each batch's phases:
- encode: its samples enter the HEU one per `point` cycles (8L), once the previous batch's last
  sample is in and its bank is free (the batch two before has sent its results); its last feature
  is written `encode` cycles (8L + 18) after its last sample;
- layers: from the cycle after both its last feature and the previous batch's last result, every
  layer's column folds as back-to-back tiles (`tiles` cycles);
- results: one per cycle from the cycle after its last tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .heu import cycles_per_point, latency
from .mlp_engine import cycles_per_tile

BANKS = 2
#: Full batches simulated before a stream's period is read off and extrapolated.
WARMUP_BATCHES = 8


@dataclass(frozen=True)
class CoreTiming:
    """The schedule's durations, in cycles: `point` between samples into the HEU, `encode` from a
    batch's last sample to its last feature, `tiles` of one batch's layers, `result` per result,
    `issue` from the later of a batch's last feature and the previous batch's last result to its
    first tile."""

    point: float
    encode: float
    tiles: float
    result: float = 1.0
    issue: float = 1.0

    @classmethod
    def of(cls, levels: int, layers, rows: int, cols: int) -> CoreTiming:
        """The RTL's timing: layers as (k, c_out, wbits)."""
        return cls(cycles_per_point(levels), latency(levels), tile_cycles(layers, rows, cols))


def column_folds(c_out: int, cols: int) -> int:
    """Engine tiles of a layer's outputs per batch: ceil(c_out / C)."""
    return math.ceil(c_out / cols)


def weight_words(k: int, c_out: int, wbits: int, cols: int) -> int:
    """Weight memory words of a layer: one C-bit plane per (column fold, k, bit)."""
    return column_folds(c_out, cols) * k * wbits


def tile_cycles(layers, rows: int, cols: int, per_tile=cycles_per_tile) -> float:
    """Engine cycles of one batch: layers as (k, c_out, wbits), column_folds tiles each of
    `per_tile(k, wbits, rows, cols)` cycles (default: the RTL's formula; a backend's mlp_tile_cycles)."""
    return sum(column_folds(c_out, cols) * per_tile(k, wbits, rows, cols) for k, c_out, wbits in layers)


#: What a model's per-frame weight load writes: the weights and their layer and requant registers.
WEIGHT_TARGETS = ("weight", "layer", "requant")


def config_records(layers, cols: int, levels: int = 0, table_words: int = 0) -> dict[str, int]:
    """Records the config port takes to load a model (rtl.core.CoreParams.config_records), per target:
    a record per level, per table word, per weight plane word (weight_words), per layer, and per
    requantizer of every column fold's C columns. Layers as (k, c_out, wbits)."""
    return {"heu_level": levels, "heu_table": table_words,
            "weight": sum(weight_words(k, c_out, b, cols) for k, c_out, b in layers),
            "layer": len(layers), "requant": sum(column_folds(c_out, cols) for _, c_out, _ in layers) * cols}


def _batch(t: CoreTiming, n: int, prev: dict | None, prev2: dict | None) -> dict:
    first = prev["last_in"] + t.point if prev else 0
    if prev2:
        first = max(first, prev2["last_out"] + 1)
    last_in = first + (n - 1) * t.point
    encoded = last_in + t.encode
    run = max(encoded, prev["last_out"] if prev else 0) + t.issue
    return {"first_in": first, "last_in": last_in, "encoded": encoded, "run": run,
            "last_out": run + t.tiles + (n - 1) * t.result}


def timed_schedule(sizes, t: CoreTiming, rows: int) -> list[dict]:
    """Per batch of `sizes` (samples always offered, results taken at once): the cycles, counted
    from the first sample's handshake (cycle 0), of its first and last sample's handshake, its
    last feature, its first tile's start and its last result."""
    out: list[dict] = []
    for i, n in enumerate(sizes):
        if not 1 <= n <= rows:
            raise ValueError(f"a batch holds 1..{rows} samples, got {n}")
        out.append(_batch(t, n, out[i - 1] if i else None, out[i - BANKS] if i >= BANKS else None))
    return out


def schedule(sizes, levels: int, layers, rows: int, cols: int) -> list[dict]:
    """timed_schedule with the RTL's timing (CoreTiming.of)."""
    return timed_schedule(sizes, CoreTiming.of(levels, layers, rows, cols), rows)


def stream_cycles(sizes, levels: int, layers, rows: int, cols: int) -> int:
    """What the core's `cycles` counter reads after batches of `sizes` offered back to back, results
    taken at once: from the first sample's handshake to the last result's, both included. One
    batch alone: n * 8L + 19 + tile_cycles + n."""
    return schedule(sizes, levels, layers, rows, cols)[-1]["last_out"] + 1


def _shift(b: dict, d: float) -> dict:
    return {k: v + d for k, v in b.items()}


def frame_cycles(n_samples: int, t: CoreTiming, rows: int) -> float:
    """stream_cycles of n_samples in full batches of `rows` and one partial batch, without stepping
    through every batch: the schedule is a max-plus recurrence of constant coefficients, so once two
    consecutive batches' state is that of the batch `q` before shifted by one period P (q = 1 or 2,
    the banks), every later full batch is its predecessor q back shifted by P."""
    if n_samples < 1:
        raise ValueError(f"a frame needs at least one sample, got {n_samples}")
    full, rem = divmod(n_samples, rows)
    sizes = [rows] * full + ([rem] if rem else [])
    if full <= WARMUP_BATCHES:
        return timed_schedule(sizes, t, rows)[-1]["last_out"] + 1
    s = timed_schedule([rows] * WARMUP_BATCHES, t, rows)
    for q in (1, 2):
        deltas = {round(s[-1 - j][k] - s[-1 - q - j][k], 6) for j in (0, 1) for k in s[-1]}
        if len(deltas) == 1:
            period, left = deltas.pop(), full - WARMUP_BATCHES
            jumps, step = divmod(left, q)
            prev2, prev = _shift(s[-2], jumps * period), _shift(s[-1], jumps * period)
            for n in [rows] * step + ([rem] if rem else []):
                prev2, prev = prev, _batch(t, n, prev, prev2)
            return prev["last_out"] + 1
    return timed_schedule(sizes, t, rows)[-1]["last_out"] + 1  # no period found: step through
