"""sim_py.core: the core's schedule (its RTL check is tests/test_core_rtl.py)."""

import pytest

from sim_py.core import (
    CoreTiming,
    config_records,
    frame_cycles,
    schedule,
    stream_cycles,
    tile_cycles,
    timed_schedule,
)
from sim_py.heu import cycles_per_batch

LAYERS = [(8, 16, 8), (16, 16, 4), (31, 16, 6), (16, 16, 3), (16, 3, 5)]  # (k, c_out, wbits)


def test_one_batch_is_the_heu_then_the_tiles_then_the_results():
    assert tile_cycles(LAYERS, 8, 8) == 2 * 92 + 2 * 92 + 2 * 214 + 2 * 76 + 108  # K*b + 2R + C + 4 each
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


@pytest.mark.parametrize("levels", [1, 4, 9, 64])  # engine-bound to HEU-bound, and in between
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_frame_cycles_equal_the_schedule_batch_by_batch(levels, rows):
    """The extrapolated frame equals stepping through every batch, for full and partial last batches."""
    timing = CoreTiming.of(levels, LAYERS, rows, 8)
    for n in (1, rows * 8, rows * 9 + 1, rows * 40 - 1, 1000):
        sizes = [rows] * (n // rows) + ([n % rows] if n % rows else [])
        assert frame_cycles(n, timing, rows) == stream_cycles(sizes, levels, LAYERS, rows, 8), n


def test_frame_cycles_with_fractional_timing():
    """A model's timing (calibrated constants, amortized stalls) need not be whole cycles."""
    timing = CoreTiming(point=33.7, encode=40.2, tiles=301.3, result=1.05)
    sizes = [8] * 125
    assert frame_cycles(1000, timing, 8) == pytest.approx(timed_schedule(sizes, timing, 8)[-1]["last_out"] + 1)


def test_config_records_count_what_the_cores_encoder_makes(tmp_path):
    """sim_py.core.config_records against rtl.core.CoreParams.config_records, per target, for a
    random policy on an odd array (partial column folds)."""
    from collections import Counter

    from hero.quant.export import load_export
    from rtl.core import Target
    from verif.core_host import sweep_case

    params, tb = sweep_case(4, 3, 5, 7, 11, tmp_path, n_trace=4)
    model = load_export(tb["export"])
    made = Counter(Target(params.config_layout.from_bits(r).target).name.lower()
                   for r in params.config_records(model))
    layers = [(s.k, s.c_out, x.bits) for s, x in zip(params.layers, model.layers, strict=True)]
    assert dict(made) == config_records(layers, params.cols, params.levels, len(model.table_memory))
