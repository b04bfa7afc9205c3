"""Measured MLP-engine cycles per tile against (K, weight bits), under Verilator.

    python -m bench.mlp_engine [--rows 8 --cols 8 --max-wbits 8]

Every figure is read from the RTL's cycle counter (cocotb driving the Verilator model) and compared
with sim_py.mlp_engine.cycles_per_tile. Simulation speed is given twice, in engine cycles per second
of wall time: with cocotb driving and checking every cycle from Python (how the tests and the
calibration run), and free-running (a C++ Verilator driver, verif/native/, no Python per cycle).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from hero import cli
from hero.intarith import ACT_BITS, MAX_WBITS, MIN_WBITS, REQ_MULT_BITS
from rtl.gen import flag_error, mlp_engine
from rtl.mlp_engine import operand_layout, result_layout
from sim_py.mlp_engine import cycles_per_tile
from verif import sim
from verif.native import build_native

KS = (1, 16, 64, 256, 1024)


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.mlp_engine", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=cli.number(int), default=8, help="PE rows R (samples per tile)")
    ap.add_argument("--cols", type=cli.number(int), default=8, help="PE columns C (outputs per tile)")
    ap.add_argument("--max-wbits", type=cli.number(int, lo=MIN_WBITS, hi=MAX_WBITS), default=8,
                    help=f"widest weight, {MIN_WBITS}..{MAX_WBITS} (the weight formats'; the sweep runs each)")
    a = ap.parse_args(argv)
    try:  # the legal ranges are the engine's
        engine = mlp_engine(a.rows, a.cols, a.max_wbits)
    except ValueError as e:
        ap.error(flag_error(str(e)))
    build = sim.build(engine, "mlp_engine", waves=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.json"
        params = {"rows": a.rows, "cols": a.cols, "max_wbits": a.max_wbits, "acc_bits": 32, "seed": 3,
                  "ks": list(KS), "out": str(out)}
        sim.run(build, "verif.tb_mlp_engine", "cycle_sweep", params)
        rows = json.loads(out.read_text())
    free = native_speed(a.rows, a.cols, a.max_wbits)

    wbits_list = sorted({r["wbits"] for r in rows})
    by = {(r["k"], r["wbits"]): r for r in rows}
    print(f"MLP engine {a.rows}x{a.cols}, max {a.max_wbits} weight bits: measured cycles per tile "
          f"(Verilator); '=' marks agreement with cycles_per_tile = K*b + 2R + C")
    print("K \\ bits " + "".join(f"{b:>9}" for b in wbits_list))
    mismatches = 0
    for k in KS:
        cells = []
        for b in wbits_list:
            r = by[(k, b)]
            ok = r["cycles"] == r["period"] == cycles_per_tile(k, b, a.rows, a.cols)
            mismatches += not ok
            cells.append(f"{r['cycles']:>8}{'=' if ok else '!'}")
        print(f"{k:>9} " + "".join(cells))
    total_cycles = sum(r["cycles"] for r in rows)
    total_seconds = sum(r["seconds"] for r in rows)
    speed = total_cycles / total_seconds
    macs_per_cycle_k1024 = a.rows * a.cols * 1024 / by[(1024, 8)]["cycles"] if 8 in wbits_list else 0.0
    raw = free["cycles"] / free["seconds"]
    print(f"\nsimulation speed, cocotb driving and checking every cycle: {speed:,.0f} cycles/s "
          f"({total_cycles} cycles in {total_seconds:.2f} s)")
    print(f"simulation speed, free-running Verilator ({free['tiles']} tiles of K={free['k']}, C++ driver): "
          f"{raw:,.0f} cycles/s ({free['cycles']} cycles in {free['seconds']:.2f} s), "
          f"{raw / speed:.0f}x the cocotb-driven speed")
    print(f"formula mismatches: {mismatches} of {len(rows)} tiles")
    print(f"cycles_k64_w8={by[(64, 8)]['cycles'] if 8 in wbits_list else 0} "
          f"cycles_k64_w2={by[(64, 2)]['cycles']} macs_per_cycle_k1024_w8={macs_per_cycle_k1024:.2f} "
          f"formula_mismatches={mismatches} cocotb_cycles_per_s={speed:.0f} verilator_cycles_per_s={raw:.0f}")
    return 1 if mismatches else 0


def native_speed(rows: int, cols: int, max_wbits: int, k: int = 4096, tiles: int = 20) -> dict:
    """Run back-to-back tiles in the C++ driver; check its cycle count and result exactly."""
    exe = build_native(mlp_engine(rows, cols, max_wbits), "mlp_engine", "mlp_engine_speed.cpp")
    x = 3  # every activation; every weight bit is 1, so every weight reads as -1
    payload = operand_layout(rows, cols, ACT_BITS).const({"x": [x] * rows, "w": (1 << cols) - 1}).as_bits()
    layout_out = result_layout(rows, cols, ACT_BITS, 32)
    words = [str((payload >> (32 * i)) & 0xFFFFFFFF) for i in range((payload.bit_length() + 31) // 32 + 1)]
    mult = sum(1 << (REQ_MULT_BITS * c) for c in range(cols))  # every column's multiplier 1, shift 0
    mult_words = [str((mult >> (32 * i)) & 0xFFFFFFFF) for i in range((REQ_MULT_BITS * cols + 31) // 32)]
    res = subprocess.run([str(exe), str(k), str(tiles), str(max_wbits), str(len(mult_words)), *mult_words, *words],
                         capture_output=True, text=True, check=True)
    cycles, seconds, *row0 = res.stdout.split()
    bits = sum(int(w) << (32 * i) for i, w in enumerate(row0)) & ((1 << layout_out.size) - 1)
    acc = int(layout_out.from_bits(bits).acc[0])
    assert acc == -x * k, f"free-running result {acc}, expected {-x * k}"
    assert int(cycles) == tiles * cycles_per_tile(k, max_wbits, rows, cols), cycles
    return {"k": k, "tiles": tiles, "cycles": int(cycles), "seconds": float(seconds)}


if __name__ == "__main__":
    raise SystemExit(main())
