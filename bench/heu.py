"""Measured hash-encoding-unit cycles per point against levels and table bit widths, under Verilator.

    python -m bench.heu [--features 2 --log2t 10 --word-bits 32 --points 64]

For each L in LEVELS a HEU is built (cached under build/sim/), and for each table width a batch of
random points runs back to back through the cocotb testbench (verif/tb_heu.py `throughput`), every
result checked bit for bit against hero.intarith. Cycles are read from the RTL's `cycles` counter
and compared with sim_py.heu.cycles_per_batch. Memory words per level come from the packing formula
hero.intarith.hash_words_per_level, which the RTL tests load and read back exactly. Simulation speed
is given twice, in HEU cycles per second of wall time: with cocotb driving and checking every cycle
from Python (how the tests run), and free-running (a C++ Verilator driver, verif/native/heu_speed.cpp,
no Python per cycle), whose results are also checked bit for bit against hero.intarith.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hero import cli
from hero.intarith import HASH_MAX_BITS, HASH_MIN_BITS, hash_words_per_level
from rtl.gen import flag_error, heu
from rtl.heu import check_heu_params, config_layout, point_layout, result_layout, table_layout
from sim_py.heu import cycles_per_batch, cycles_per_point, latency
from verif import sim
from verif.heu_ref import random_points, random_setup
from verif.native import build_native

LEVELS = (1, 2, 4, 8, 16)
BITS = (2, 4, 8)


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.heu", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=cli.number(int), default=2, help="features per entry F")
    ap.add_argument("--log2t", type=cli.number(int), default=10, help="log2 of the table size T per level")
    ap.add_argument("--word-bits", type=cli.number(int), default=32, help="table memory word width W")
    ap.add_argument("--points", type=cli.number(int, lo=1), default=64, help="points per batch")
    a = ap.parse_args(argv)
    f, log2t, w, n = a.features, a.log2t, a.word_bits, a.points
    try:  # the legal ranges are the HEU's: every L of the sweep must build
        for levels in LEVELS:
            check_heu_params(levels, f, log2t, w, None)
    except ValueError as e:
        ap.error(flag_error(str(e)))
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")  # the simulator runs inherit it: only the tables
    measured, sim_cycles, sim_seconds, mismatches = {}, 0, 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for levels in LEVELS:
            dut = heu(levels, f, log2t, w)
            build = sim.build(dut, "heu", waves=False)
            for bits in BITS:
                out = Path(tmp) / f"L{levels}b{bits}.json"
                params = {"levels": levels, "features": f, "log2t": log2t, "word_bits": w,
                          "depth": dut.depth, "n_min": 4, "n_max": 256, "seed": 5, "bits": bits,
                          "n_points": n, "report": str(out)}
                sim.run(build, "verif.tb_heu", "throughput", params)
                r = json.loads(out.read_text())
                measured[(levels, bits)] = r["cycles"]
                mismatches += r["cycles"] != cycles_per_batch(n, levels)
                sim_cycles += r["sim_cycles"]
                sim_seconds += r["sim_seconds"]

    print(f"HEU, F={f}, T=2^{log2t}, W={w}: measured cycles for {n} points back to back (Verilator "
          f"`cycles` counter), and per point; '=' marks agreement with cycles_per_batch = n*8L + 19")
    print("L \\ b_l " + "".join(f"{b:>16}" for b in BITS) + "   8L")
    for levels in LEVELS:
        cells = []
        for bits in BITS:
            c = measured[(levels, bits)]
            ok = c == cycles_per_batch(n, levels)
            cells.append(f"{c:>8}{'=' if ok else '!'} {c / n:>6.2f}")
        print(f"{levels:>7} " + "".join(cells) + f"{cycles_per_point(levels):>5}")

    t = 1 << 14
    widths = range(HASH_MIN_BITS, HASH_MAX_BITS + 1)
    print("\nmemory words per level (hash_words_per_level): a full table of T=2^14 entries, bit-packed")
    print("F, W \\ b_l" + "".join(f"{b:>8}" for b in widths) + "   b8/b2")
    for ff, ww in ((2, 32), (2, 64), (4, 32), (4, 64), (8, 64)):
        words = [hash_words_per_level(t, ff, b, ww) for b in widths]
        print(f"{ff}, {ww:>2}     " + "".join(f"{x:>8}" for x in words) + f"   {words[-1] / words[0]:.2f}")
    ratio = hash_words_per_level(t, f, 8, w) / hash_words_per_level(t, f, 2, w)

    speed = sim_cycles / sim_seconds
    free = native_speed(16, f, log2t, w)
    raw = free["cycles"] / free["seconds"]
    print(f"\nsimulation speed, cocotb driving and checking every cycle: {speed:,.0f} cycles/s "
          f"({sim_cycles} cycles in {sim_seconds:.2f} s)")
    print(f"simulation speed, free-running Verilator (L=16, {free['points']} points, C++ driver, results "
          f"checked): {raw:,.0f} cycles/s ({free['cycles']} cycles in {free['seconds']:.2f} s), "
          f"{raw / speed:.0f}x the cocotb-driven speed, {raw / cycles_per_point(16):,.0f} points/s")
    print(f"formula mismatches: {mismatches} of {len(measured)} runs")
    print(f"cycles_per_point_L16={measured[(16, 8)] / n:.2f} "
          f"cycles_per_point_L16_b2={measured[(16, 2)] / n:.2f} "
          f"latency_L16={latency(16)} words_b8_over_b2={ratio:.2f} "
          f"sim_cycles_per_s={speed:.0f} verilator_cycles_per_s={raw:.0f} formula_mismatches={mismatches}")
    return 1 if mismatches else 0


def _words(value: int, n: int) -> list[int]:
    return [(value >> (32 * i)) & 0xFFFFFFFF for i in range(n)]


def native_speed(levels: int, features: int, log2t: int, word_bits: int, n_points: int = 4000) -> dict:
    """Run a batch in the C++ driver; check every result bit for bit and the cycle count exactly."""
    dut = heu(levels, features, log2t, word_bits)
    exe = build_native(dut, "heu", "heu_speed.cpp")
    rng = np.random.default_rng(9)
    setup = random_setup(rng, levels, features, log2t, word_bits, 16, 512)
    pos = random_points(rng, n_points)
    cl, tl = config_layout(levels, log2t, dut.depth), table_layout(word_bits, dut.depth)
    pl, rl = point_layout(), result_layout(levels, features)
    nw = [-(-lay.size // 32) for lay in (cl, tl, pl, rl)]
    lines = [" ".join(map(str, nw)), str(levels)]
    lines += [" ".join(map(str, _words(cl.const(r).as_bits(), nw[0]))) for r in setup.config_records()]
    image = sorted(setup.memory_image().items())
    lines.append(str(len(image)))
    lines += [" ".join(map(str, _words(tl.const({"addr": a, "data": d}).as_bits(), nw[1]))) for a, d in image]
    lines.append(str(n_points))
    lines += [" ".join(map(str, _words(pl.const(list(map(int, p))).as_bits(), nw[2]))) for p in pos]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as stim:
        stim.write("\n".join(lines) + "\n")
        stim.flush()
        res = subprocess.run([str(exe), stim.name], capture_output=True, text=True, check=True)
    head, *rows = res.stdout.splitlines()
    cycles, seconds, counter = head.split()
    got = np.array([[(sum(int(x) << (32 * i) for i, x in enumerate(r.split())) >> (8 * lane)) & 0xFF
                     for lane in range(levels * features)] for r in rows])
    np.testing.assert_array_equal(got, setup.expected(pos), err_msg="free-running results differ")
    expected = cycles_per_batch(n_points, levels)
    assert int(cycles) == int(counter) == expected, (cycles, counter, expected)
    return {"points": n_points, "cycles": int(cycles), "seconds": float(seconds)}


if __name__ == "__main__":
    raise SystemExit(main())
