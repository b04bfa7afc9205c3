"""Compute model of the MLP engine (rtl/mlp_engine.py): cycles per tile and per layer.

The formulas are the RTL's, derived in docs/mlp_engine.md and checked against Verilator
cycle counters by the verification tests.
"""

from __future__ import annotations

import math

#: Enabled cycles from a weight's last bit to its product in the PE's accumulator: the product
#: register between the Horner add and the accumulator add (rtl/bitserial_pe.py).
PRODUCT_STAGES = 1
#: The requantizer's registers (rtl/requantizer.py, pipelined): the product, the rounded shift, q.
REQUANT_STAGES = 3
#: Cycles from a row's selection to its result: the selected row's register, then the requantizer.
DRAIN_STAGES = 1 + REQUANT_STAGES


def skew_cycles(rows: int, cols: int) -> int:
    """Cycles for the last beat to cross the systolic skew (fill = drain = R + C - 2)."""
    return rows + cols - 2


def cycles_per_tile(k: int, wbits: int, rows: int, cols: int) -> int:
    """Engine cycles for one R x C output tile reducing over k, with no stalls.

    1 (start) + k * wbits (feed, one weight bit-plane per cycle) + (R + C - 2) (flush the skew)
    + PRODUCT_STAGES (the last product into the accumulators) + R (one row per cycle into the
    drain pipeline) + DRAIN_STAGES (the last row through it) = k * wbits + 2R + C + 4.
    Back-to-back tiles issue with no gap.
    """
    if k < 1 or wbits < 1:
        raise ValueError(f"k and wbits must be positive, got k={k}, wbits={wbits}")
    return 1 + k * wbits + skew_cycles(rows, cols) + PRODUCT_STAGES + rows + DRAIN_STAGES


def layer_cycles(n: int, k: int, c_out: int, wbits: int, rows: int, cols: int) -> int:
    """Cycles for Y[n x c_out] = X[n x k] . W[k x c_out], as ceil(n/R) * ceil(c_out/C) tiles."""
    folds = math.ceil(n / rows) * math.ceil(c_out / cols)
    return folds * cycles_per_tile(k, wbits, rows, cols)
