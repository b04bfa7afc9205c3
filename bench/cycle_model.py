"""Fidelity and speed of the cycle model (sim_py) against the RTL under Verilator.

    python -m bench.cycle_model [--ckpt runs/NAME/checkpoint.pt] [--hw fpga_ecp5]

1. Configurations held out of the calibration fit (array shapes, K, HEU levels, batch sizes; whole
   cores with random policies and streams of batches) run through the RTL (cocotb + Verilator) and
   through the `rtl_calibrated` model; the cycle error is reported per unit, the core's included.
2. Speed for the same work: one frame of the scene. Verilator's time is the frame's MLP-engine and
   HEU cycles divided by each unit's measured free-running Verilator speed (C++ drivers; simulating
   the whole frame would take hours); the model's time is one frame query.
3. A whole-frame latency query under new policies, after the one-time per-scene preparation.
   Without --ckpt, a small model of the procedural scene is trained first (about a minute).
Last line: max_error_pct=<e> speedup_vs_rtl=<s> frame_query_ms=<t>
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench import flags
from bench import heu as heu_bench
from bench.mlp_engine import native_speed as mlp_native_speed
from hero import cli
from sim_py.backends import get_backend
from sim_py.calibrate import (
    CORE_FIT_CASES,
    HEU_FIT_POINTS,
    HEU_FIT_SHAPES,
    MLP_FIT_KS,
    MLP_FIT_SHAPES,
    core_prediction,
    sweep_core,
    sweep_heu,
    sweep_mlp_engine,
)
from sim_py.frame import FrameModel
from sim_py.report import frame_workload_from_checkpoint

#: Configurations that the fit never saw.
HELD_OUT_MLP_SHAPES = ((3, 5, 6), (5, 7, 8), (16, 2, 5))
HELD_OUT_KS = (7, 33, 100)
HELD_OUT_HEU_SHAPES = ((3, 2, 8, 32), (6, 4, 10, 64))
HELD_OUT_POINTS = (7, 33)
#: Cores (levels, rows, cols, max_wbits, policy seed): two shapes the fit never saw, and a fitted
#: shape under a new policy.
HELD_OUT_CORE_CASES = ((8, 2, 16, 6, 21), (16, 6, 4, 7, 22), (4, 8, 8, 8, 23))


def held_out_mlp(model) -> list[dict]:
    assert not set(HELD_OUT_MLP_SHAPES) & set(MLP_FIT_SHAPES) and not set(HELD_OUT_KS) & set(MLP_FIT_KS)
    return [error_row("mlp_engine", f"{p['rows']}x{p['cols']} K={p['k']} b={p['wbits']}", p["cycles"],
                      model.mlp_tile_cycles(p["k"], p["wbits"], p["rows"], p["cols"]))
            for p in sweep_mlp_engine(HELD_OUT_MLP_SHAPES, HELD_OUT_KS, seed=5)]


def held_out_heu(model) -> list[dict]:
    assert not set(HELD_OUT_HEU_SHAPES) & set(HEU_FIT_SHAPES) and not set(HELD_OUT_POINTS) & set(HEU_FIT_POINTS)
    return [error_row("heu", f"L={p['levels']} F={p['features']} T=2^{p['log2t']} n={p['n']} b={p['bits']}",
                      p["cycles"], model.heu_batch_cycles(p["n"], p["levels"]))
            for p in sweep_heu(HELD_OUT_HEU_SHAPES, HELD_OUT_POINTS, seed=5, bits=(3, 6))]


def held_out_core(model) -> tuple[list[dict], float]:
    """Error rows, and Verilator's median speed on the core under cocotb (cycles per second)."""
    assert not set(HELD_OUT_CORE_CASES) & set(CORE_FIT_CASES)
    points, loads = sweep_core(HELD_OUT_CORE_CASES)
    rows = []
    for p in points:
        sizes = p["sizes"] if len(p["sizes"]) <= 4 else f"{p['sizes'][:3]}.. ({len(p['sizes'])})"
        rows.append(error_row("core", f"L={p['levels']} {p['rows']}x{p['cols']} {sizes}", p["cycles"],
                              core_prediction(model, p)))
    for p in loads:
        n = sum(p["records"].values())
        rows.append(error_row("config", f"L={p['levels']} {p['rows']}x{p['cols']} load, {n} records", p["cycles"],
                              model.config_cycles(n)))
    return rows, float(np.median([p["cycles_per_s"] for p in points if sum(p["sizes"]) > 16]))


def error_row(unit: str, config: str, rtl: int, pred: float) -> dict:
    return {"unit": unit, "config": config, "rtl": rtl, "model": pred, "error_pct": abs(pred - rtl) / rtl * 100}


def default_checkpoint() -> Path:
    """A small model of the procedural scene, trained once and kept under build/."""
    from hero.train import default_config, train

    out = Path("build/bench/cycle_model_ckpt")
    ckpt = out / "checkpoint.pt"
    if not ckpt.exists():
        train(default_config(preset="cpu", out=str(out), steps=300, progress=False, save_renders=False,
                             test_views=1))
    return ckpt


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.cycle_model", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=None, help="checkpoint whose test view 0 is the frame")
    ap.add_argument("--hw", default="fpga_ecp5", help="hardware preset name or TOML file (fpga_ecp5)")
    a = ap.parse_args(argv)
    if a.ckpt is not None:
        flags.checkpoint_file(ap, "--ckpt", a.ckpt)
    [hw] = flags.hardware(ap, "--hw", [a.hw])
    model = get_backend("rtl_calibrated")

    core_rows, core_rate = held_out_core(model)
    rows = held_out_mlp(model) + held_out_heu(model) + core_rows
    print("Held-out configurations: RTL (Verilator cycle counter) against the rtl_calibrated model")
    print(f"{'unit':<11}{'configuration':<40}{'RTL cycles':>11}{'model':>10}{'error %':>9}")
    for r in rows:
        print(f"{r['unit']:<11}{r['config']:<40}{r['rtl']:>11}{r['model']:>10.0f}{r['error_pct']:>9.3f}")
    per_unit = {}
    for r in rows:
        per_unit[r["unit"]] = max(per_unit.get(r["unit"], 0.0), r["error_pct"])
    for unit, err in per_unit.items():
        print(f"max error {unit}: {err:.3f}% over {sum(r['unit'] == unit for r in rows)} points")
    max_err = max(per_unit.values())

    ckpt = a.ckpt or default_checkpoint()
    t0 = time.perf_counter()
    try:
        wl = frame_workload_from_checkpoint(ckpt, 0)
    except cli.BadInput as e:  # the checkpoint's scene is not there
        return cli.refuse(str(e))
    fm = FrameModel(wl, hw, model)
    prep_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    fm.query([8] * len(wl.levels), [8] * len(wl.layers))  # warm the compiled cache kernel
    times, last = [], None
    for _ in range(20):
        tb = rng.integers(2, 9, len(wl.levels))
        wb = rng.integers(2, 9, len(wl.layers))
        t0 = time.perf_counter()
        last = fm.query(tb, wb)
        times.append(time.perf_counter() - t0)
    query_ms = float(np.median(times) * 1e3)
    print(f"\nframe: {wl.name}, {wl.height}x{wl.width}, {wl.n_samples} samples; {hw.name}")
    print(f"one-time preparation {prep_s:.2f} s; query under a new policy: median {query_ms:.1f} ms, "
          f"max {max(times) * 1e3:.1f} ms over {len(times)} random policies")

    mlp_free = mlp_native_speed(hw.pe_rows, hw.pe_cols, hw.max_wbits, k=64, tiles=2000)
    heu_free = heu_bench.native_speed(len(wl.levels), wl.levels[0].features, min(wl.log2t, 14), 32, n_points=2000)
    mlp_rate = mlp_free["cycles"] / mlp_free["seconds"]
    heu_rate = heu_free["cycles"] / heu_free["seconds"]
    heu_cycles = last.details["lookups"] / hw.heu_lanes  # one lookup per cycle and lane
    verilator_s = last.mlp / mlp_rate + heu_cycles / heu_rate
    speedup = verilator_s / (query_ms / 1e3)
    print(f"Verilator (free-running C++): MLP engine {hw.pe_rows}x{hw.pe_cols} {mlp_rate:,.0f} cycles/s, "
          f"HEU L={len(wl.levels)} {heu_rate:,.0f} cycles/s")
    print(f"the same frame in Verilator: {last.mlp:,.0f} MLP + {heu_cycles:,.0f} HEU cycles = {verilator_s:,.0f} s; "
          f"in the model: {query_ms:.1f} ms -> {speedup:,.0f}x")
    core_cycles = last.details["core_cycles"]
    core_speedup = core_cycles / core_rate / (query_ms / 1e3)
    print(f"the frame on the core: {core_cycles:,.0f} cycles; the core under cocotb + Verilator runs "
          f"{core_rate:,.0f} cycles/s (held-out sweep, median) -> {core_cycles / core_rate:,.0f} s, "
          f"{core_speedup:,.0f}x the model's query")

    print(f"\nmax_error_pct={max_err:.4f} core_error_pct={per_unit['core']:.4f} speedup_vs_rtl={speedup:.0f} "
          f"core_speedup={core_speedup:.0f} frame_query_ms={query_ms:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
