"""Compute model of the hash encoding unit (rtl/heu.py): cycles per point and per batch, memory words.

The formulas are the RTL's, derived in docs/heu.md and checked against the Verilator cycle
counters by tests/test_heu_rtl.py.
"""

from __future__ import annotations

from hero.intarith import HASH_CORNERS, hash_words_per_level

from .mlp_engine import REQUANT_STAGES

#: Register stages before the output register (docs/heu.md): issue, lookup, scaled, vertex, index
#: terms, dense sum, index, bit offset, address, memory read, words, entry, fields, product,
#: accumulated sum, then the requantizer's REQUANT_STAGES (3). A point's output is valid this many
#: cycles after its last lookup was issued.
PIPELINE_STAGES = 15 + REQUANT_STAGES
CORNERS = HASH_CORNERS


def cycles_per_point(levels: int) -> int:
    """Steady-state issue interval: one corner lookup per cycle, 8 per level."""
    if levels < 1:
        raise ValueError(f"levels must be positive, got {levels}")
    return CORNERS * levels


def latency(levels: int) -> int:
    """Cycles from a point's input handshake to its output being valid (no stalls)."""
    return cycles_per_point(levels) + PIPELINE_STAGES


def cycles_per_batch(n_points: int, levels: int) -> int:
    """What the `cycles` counter reads after n points sent back to back, none refused.

    Counted from the first point's input handshake to the last output handshake, both included:
    n * 8L issue cycles + PIPELINE_STAGES + 1. Each cycle an output is refused while it stops the
    pipeline (or at the end of the batch) adds one, and is counted in `stall_cycles`.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be positive, got {n_points}")
    return n_points * cycles_per_point(levels) + PIPELINE_STAGES + 1


def memory_words(entries: list[int], features: int, bits: list[int], word_bits: int) -> list[int]:
    """Memory words per level: ceil(entries * F * b_l / W) (hero.intarith.hash_words_per_level)."""
    return [hash_words_per_level(e, features, b, word_bits) for e, b in zip(entries, bits, strict=True)]
