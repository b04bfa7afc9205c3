"""sim_py frame model: a frame of a real (tiny) NeRF, timed under policies."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from hero.nerf.model import NGPField
from hero.nerf.occupancy import OccupancyGrid
from hero.nerf.presets import preset
from hero.nerf.render import step_size
from sim_py import mlp_engine, workload
from sim_py.backends import get_backend
from sim_py.core import stream_cycles
from sim_py.frame import FrameModel
from sim_py.hw import load_hardware
from tests.conftest import TINY_MODEL

AABB = torch.tensor([[-1.5] * 3, [1.5] * 3])
C2W = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4.0]])
META = {"ndc": False, "height": 24, "width": 24, "fx": 30.0, "fy": 30.0, "cx": 12.0, "cy": 12.0}


def make_workload(empty_half: bool = False, **kw):
    torch.manual_seed(0)
    cfg = preset("tiny", **TINY_MODEL)
    model = NGPField(cfg, AABB)
    grid = OccupancyGrid(AABB, cfg["grid_res"])
    if empty_half:
        cells = torch.arange(grid.res**3)
        grid.bitfield[(cells % grid.res) < grid.res // 2] = False  # x < 0 is empty space
    return workload.workload_from_frame(model, grid, C2W, META, step_size(AABB, cfg["steps_per_ray"]),
                                        cfg["steps_per_ray"], **kw)


@pytest.fixture(scope="module")
def wl():
    return make_workload(trace_samples=4096)


def model_for(wl, hw="fpga_ecp5", backend="analytic", **changes):
    cfg = load_hardware(hw)
    return FrameModel(wl, dataclasses.replace(cfg, **changes) if changes else cfg, get_backend(backend))


def test_workload_comes_from_the_models_units_and_ray_marcher(wl):
    assert [lv.name for lv in wl.levels] == [f"grid.level{i:02d}" for i in range(4)]
    assert [ly.name for ly in wl.layers] == ["density.fc0", "density.fc1", "color.fc0", "color.fc1", "color.fc2"]
    assert wl.n_rays == 24 * 24 and wl.samples_per_ray.sum() == wl.n_samples > 0
    assert wl.trace_pos.dtype == np.int64 and wl.trace_pos.max() < 2**16
    assert 0 < wl.trace_counted.sum() < len(wl.trace_counted)  # warm-up samples are not counted


def test_mlp_cycles_follow_the_tile_formula_per_layer(wl):
    fm = model_for(wl)
    hw = fm.hw
    bits = [8, 4, 2, 6, 3]
    b = fm.query([8] * 4, bits)
    per_batch = sum(math.ceil(ly.c_out / hw.pe_cols) * mlp_engine.cycles_per_tile(ly.k, wb, hw.pe_rows, hw.pe_cols)
                    for ly, wb in zip(wl.layers, bits, strict=True))
    assert b.mlp == math.ceil(wl.n_samples / hw.pe_rows) * per_batch + wl.n_samples  # tiles, then results
    assert fm.query([8] * 4, [2] * 5).mlp < fm.query([8] * 4, [8] * 5).mlp


def test_one_lane_on_chip_frame_is_the_cores_stream(wl):
    """One HEU lane, every level on chip: the frame's compute is what the core's counter would read."""
    fm = model_for(wl, table_sram_kib=4096.0)
    hw, bits = fm.hw, [8, 4, 2, 6, 3]
    b = fm.query([8] * 4, bits)
    n, rows = wl.n_samples, hw.pe_rows
    sizes = [rows] * (n // rows) + ([n % rows] if n % rows else [])
    layers = [(ly.k, ly.c_out, wb) for ly, wb in zip(wl.layers, bits, strict=True)]
    assert b.details["core_cycles"] == stream_cycles(sizes, len(wl.levels), layers, rows, hw.pe_cols)
    assert b.total > b.details["core_cycles"]  # plus the weight load
    assert max(b.encoding, b.mlp) < b.details["core_cycles"] < b.encoding + b.mlp  # overlapped


def test_backends_agree_while_calibration_is_exact(wl):
    a = model_for(wl, backend="analytic").query([5] * 4, [5] * 5)
    c = model_for(wl, backend="rtl_calibrated").query([5] * 4, [5] * 5)
    assert a.mlp == pytest.approx(c.mlp) and a.encoding == pytest.approx(c.encoding)


def test_tables_that_fit_on_chip_cause_no_memory_traffic(wl):
    big = model_for(wl, table_sram_kib=4096.0).query([8] * 4, [8] * 5)
    assert all(big.details["on_chip"]) and big.details["dram_cycles"] == 0 and big.memory_stall == 0
    none = model_for(wl, table_sram_kib=0.0, cache_kib=0.0).query([8] * 4, [8] * 5)
    assert not any(none.details["on_chip"])
    # With no cache every counted lookup misses: the scaled misses are every lookup of the frame.
    assert sum(none.details["misses_per_level"]) == pytest.approx(wl.n_samples * 8 * 4)
    cached = model_for(wl, table_sram_kib=0.0).query([8] * 4, [8] * 5)
    assert 0 < sum(cached.details["misses_per_level"]) < sum(none.details["misses_per_level"])


def test_narrower_tables_put_more_levels_on_chip(wl):
    fm = model_for(wl, table_sram_kib=4.0)
    wide, narrow = fm.query([8] * 4, [8] * 5), fm.query([2] * 4, [8] * 5)
    assert sum(narrow.details["on_chip"]) > sum(wide.details["on_chip"])
    assert sum(narrow.details["misses_per_level"]) < sum(wide.details["misses_per_level"])


def test_bank_conflicts_only_with_several_lanes(wl):
    one = model_for(wl, "edge_asic", heu_lanes=1, table_sram_kib=4096.0).query([8] * 4, [8] * 5)
    eight = model_for(wl, "edge_asic", table_sram_kib=4096.0).query([8] * 4, [8] * 5)
    assert one.details["bank_conflict_cycles"] == 0 and eight.details["bank_conflict_cycles"] > 0
    assert eight.encoding < one.encoding  # eight lanes are still faster than one


def test_latency_depends_on_the_scene():
    full, half = make_workload(), make_workload(empty_half=True)
    assert half.n_samples < full.n_samples
    assert model_for(half).query([8] * 4, [8] * 5).total < model_for(full).query([8] * 4, [8] * 5).total


def test_bad_policies_are_refused(wl):
    fm = model_for(wl)
    with pytest.raises(ValueError, match="4 levels and 5 layers"):
        fm.query([8] * 3, [8] * 5)
    with pytest.raises(ValueError, match="bit width 9 outside 2..8"):
        fm.query([8] * 4, [9] * 5)


def test_workload_save_load_roundtrip(wl, tmp_path):
    workload.save(wl, tmp_path / "w.npz")
    back = workload.load(tmp_path / "w.npz")
    assert back.levels == wl.levels and back.layers == wl.layers and back.n_samples == wl.n_samples
    np.testing.assert_array_equal(back.trace_pos, wl.trace_pos)
    assert model_for(back).query([4] * 4, [4] * 5) == model_for(wl).query([4] * 4, [4] * 5)
