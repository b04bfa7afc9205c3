"""sim_py.core: the core's schedule (its RTL check is tests/test_core_rtl.py)."""

import pytest

from sim_py.core import schedule, stream_cycles, tile_cycles
from sim_py.heu import cycles_per_batch

LAYERS = [(8, 16, 8), (16, 16, 4), (31, 16, 6), (16, 16, 3), (16, 3, 5)]  # (k, c_out, wbits)


def test_one_batch_is_the_heu_then_the_tiles_then_the_results():
    assert tile_cycles(LAYERS, 8, 8) == 2 * 87 + 2 * 87 + 2 * 209 + 2 * 71 + 103
    for n in range(1, 9):
        assert stream_cycles([n], 4, LAYERS, 8, 8) == cycles_per_batch(n, 4) + tile_cycles(LAYERS, 8, 8) + n


@pytest.mark.parametrize("levels", [4, 64])  # engine-bound, HEU-bound
def test_steady_state_period_is_the_slower_unit(levels):
    rows, n = 8, 8
    s = schedule([n] * 12, levels, LAYERS, rows, 8)
    periods = {b["last_out"] - a["last_out"] for a, b in zip(s[4:], s[5:], strict=False)}
    assert periods == {max(n * 8 * levels, tile_cycles(LAYERS, rows, 8) + n)}
    # Overlapped: the stream is shorter than its batches one after the other.
    alone = stream_cycles([n], levels, LAYERS, rows, 8)
    assert stream_cycles([n] * 12, levels, LAYERS, rows, 8) < 12 * alone


def test_a_batch_larger_than_the_array_is_refused():
    with pytest.raises(ValueError, match="a batch holds 1..8 samples, got 9"):
        stream_cycles([8, 9], 4, LAYERS, 8, 8)
