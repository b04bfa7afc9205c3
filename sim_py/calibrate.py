"""`make calibrate`: fit the cycle model's constants to Verilator cycle counts.

    python -m sim_py.calibrate [--out sim_py/calibration/rtl_calibrated.json]

Runs cocotb/Verilator sweeps of the MLP engine (several array shapes, K, weight bits), of the
hash encoding unit (batch sizes, levels) and of the whole core (rtl/core.py: array shapes, levels,
random policies, streams of batches), fits the constants of sim_py/backends.py by least squares,
and writes them with the sweep points, the per-point error and a fingerprint of the RTL that was
swept. The blocks' constants come from the blocks' sweeps; the core's own (cycles per result, and
before a batch's first tile) from single batches through the core; its streams of many batches
check the overlap of the HEU and the engine that the schedule predicts; each core's model load
through the config port gives the cycles per record (k_config), and checks that
sim_py.core.config_records counts the records the core's encoder makes. tests/test_calibration.py
fails, naming `make calibrate`, once the RTL's Verilog no longer matches that fingerprint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from hero import atomic, cli
from hero.quant.export import load_export
from rtl.core import Core
from rtl.gen import heu, mlp_engine, to_verilog
from verif.core_host import sweep_core_params

from .backends import CALIBRATION_FILE, Calibrated
from .core import config_records, tile_cycles, timed_schedule
from .heu import CORNERS

#: (rows, cols, max_wbits) swept for the fit; bench.cycle_model holds other shapes out.
MLP_FIT_SHAPES = ((8, 8, 8), (4, 4, 8), (2, 6, 4), (6, 3, 6))
MLP_FIT_KS = (1, 5, 16, 64)
#: (levels, features, log2t, word_bits) of the HEU, and batch sizes, swept for the fit.
HEU_FIT_SHAPES = ((1, 2, 8, 32), (2, 2, 8, 32), (4, 2, 8, 32))
HEU_FIT_POINTS = (1, 5, 16)
#: Cores swept for the fit, as (levels, rows, cols, max_wbits, policy seed) of verif.core_host's
#: untrained NeRF: engine-bound (8x8, L=4; 4x3, L=2) and HEU-bound (8x16, L=16).
CORE_FIT_CASES = ((4, 8, 8, 8, 11), (2, 4, 3, 8, 12), (16, 8, 16, 8, 13))


def core_streams(rows: int) -> list[list[int]]:
    """A batch of every size alone, then streams that overlap: full batches, and full and partial in turn."""
    return ([[n] for n in range(1, rows + 1)] + [[rows] * 6, [rows, min(3, rows), rows, 1, rows, rows],
                                                 [rows] * 17 + [max(1, rows - 1)]])


def rtl_fingerprint() -> dict[str, str]:
    """sha256 of the Verilog of every calibrated configuration."""
    out = {}
    for rows, cols, wb in MLP_FIT_SHAPES:
        text = to_verilog(mlp_engine(rows, cols, wb), "mlp_engine")
        out[f"mlp_engine_{rows}x{cols}w{wb}"] = hashlib.sha256(text.encode()).hexdigest()
    for levels, f, log2t, w in HEU_FIT_SHAPES:
        text = to_verilog(heu(levels, f, log2t, w), "heu")
        out[f"heu_L{levels}F{f}T{log2t}W{w}"] = hashlib.sha256(text.encode()).hexdigest()
    for levels, rows, cols, wb, _ in CORE_FIT_CASES:
        text = to_verilog(Core(sweep_core_params(levels, rows, cols, wb)), "core")
        out[f"core_L{levels}_{rows}x{cols}w{wb}"] = hashlib.sha256(text.encode()).hexdigest()
    return out


def sweep_mlp_engine(shapes=MLP_FIT_SHAPES, ks=MLP_FIT_KS, seed: int = 11) -> list[dict]:
    """Measured cycles per tile, one row per (shape, K, wbits)."""
    from verif import sim

    points = []
    for rows, cols, wb in shapes:
        build = sim.build(mlp_engine(rows, cols, wb), "mlp_engine", waves=False)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "sweep.json"
            sim.run(build, "verif.tb_mlp_engine", "cycle_sweep",
                    {"rows": rows, "cols": cols, "max_wbits": wb, "acc_bits": 32, "seed": seed,
                     "ks": list(ks), "out": str(out), "measure_only": True})
            for r in json.loads(out.read_text()):
                points.append({"rows": rows, "cols": cols, "k": r["k"], "wbits": r["wbits"],
                               "cycles": r["cycles"]})
    return points


def sweep_heu(shapes=HEU_FIT_SHAPES, batches=HEU_FIT_POINTS, seed: int = 11, bits=(2, 8)) -> list[dict]:
    """Measured cycles per batch of n points, one row per (shape, n, table bits)."""
    from verif import sim

    points = []
    for levels, f, log2t, w in shapes:
        dut = heu(levels, f, log2t, w)
        build = sim.build(dut, "heu", waves=False)
        for n in batches:
            for b in bits:
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "report.json"
                    sim.run(build, "verif.tb_heu", "throughput",
                            {"levels": levels, "features": f, "log2t": log2t, "word_bits": w, "depth": dut.depth,
                             "n_min": 4, "n_max": 256, "seed": seed, "bits": b, "n_points": n,
                             "report": str(out), "measure_only": True})
                    r = json.loads(out.read_text())
                points.append({"levels": levels, "features": f, "log2t": log2t, "word_bits": w, "bits": b,
                               "n": n, "cycles": r["cycles"]})
    return points


def sweep_core(cases=CORE_FIT_CASES) -> tuple[list[dict], list[dict]]:
    """Measured cycles of streams of batches through the core, one row per (case, stream), with what
    the core's schedule needs to predict them: levels, array, and the engine cycles of one batch;
    and per case the model's load through the config port: its records per target, as the core's
    encoder made them and as sim_py.core.config_records counts them (RuntimeError when they differ),
    and the cycles it took."""
    from verif import sim
    from verif.core_host import sweep_case

    points, loads = [], []
    for levels, rows, cols, wb, seed in cases:
        with tempfile.TemporaryDirectory() as tmp:
            params, tb = sweep_case(levels, rows, cols, wb, seed, Path(tmp))
            out = Path(tmp) / "sweep.json"
            sim.run(sim.build(Core(params), "core", waves=False), "verif.tb_core", "cycle_sweep",
                    {**tb, "streams": core_streams(rows), "out": str(out)})
            model = load_export(tb["export"])
            layers = [(s.k, s.c_out, x.bits) for s, x in zip(params.layers, model.layers, strict=True)]
            measured = json.loads(out.read_text())
            for r in measured["streams"]:
                points.append({"levels": levels, "rows": rows, "cols": cols, "max_wbits": wb, "policy_seed": seed,
                               "layers": layers, "sizes": r["sizes"], "cycles": r["cycles"],
                               "cycles_per_s": r["cycles_per_s"]})
            cfg = measured["config"]
            counted = config_records(layers, cols, levels, len(model.table_memory))
            if cfg["records"] != counted:
                raise RuntimeError(f"sim_py.core.config_records counts {counted}, the core's encoder made "
                                   f"{cfg['records']} (L={levels} {rows}x{cols})")
            loads.append({"levels": levels, "rows": rows, "cols": cols, "max_wbits": wb, "policy_seed": seed,
                          "records": cfg["records"], "cycles": cfg["cycles"], "counted": counted})
    return points, loads


def fit_config(loads: list[dict]) -> tuple[dict, float]:
    """Least-squares k_config of cycles = k_config * records; the error over every load."""
    n = np.array([sum(p["records"].values()) for p in loads], dtype=float)
    y = np.array([p["cycles"] for p in loads], dtype=float)
    k = round(float(n @ y / (n @ n)), 9)
    return {"k_config": k}, float((np.abs(k * n - y) / y * 100).max())


def core_prediction(backend, p: dict) -> float:
    """The schedule's cycles for a core sweep point, from the backend's constants."""
    tiles = tile_cycles(p["layers"], p["rows"], p["cols"], backend.mlp_tile_cycles)
    return timed_schedule(p["sizes"], backend.core_timing(p["levels"], tiles), p["rows"])[-1]["last_out"] + 1


def fit_core(points: list[dict], blocks: dict) -> tuple[dict, float]:
    """Least-squares k_result and k_issue from the single batches, given the blocks' constants: a
    batch of n alone takes n*point + k_batch + tiles + k_issue + (n - 1)*k_result; the error is over
    every point, the overlapped streams included."""
    probe = Calibrated(**blocks, k_result=0.0, k_issue=0.0, k_config=1.0)  # k_config: not in the schedule
    single = [p for p in points if len(p["sizes"]) == 1]
    a = np.array([[p["sizes"][0] - 1, 1.0] for p in single])
    y = np.array([p["cycles"] - core_prediction(probe, p) for p in single], dtype=float)
    coef = np.round(np.linalg.lstsq(a, y, rcond=None)[0], 9)
    consts = {"k_result": float(coef[0]), "k_issue": float(coef[1])}
    model = Calibrated(**blocks, **consts, k_config=1.0)
    err = max(abs(core_prediction(model, p) - p["cycles"]) / p["cycles"] * 100 for p in points)
    return consts, float(err)


def fit_heu(points: list[dict]) -> tuple[dict, float]:
    """Least-squares constants of cycles = n * k_lookup * 8L + k_batch (8 corners a level)."""
    a = np.array([[p["n"] * CORNERS * p["levels"], 1.0] for p in points])
    y = np.array([p["cycles"] for p in points], dtype=float)
    coef = np.round(np.linalg.lstsq(a, y, rcond=None)[0], 9)
    err = np.abs(a @ coef - y) / y * 100
    return {"k_lookup": float(coef[0]), "k_batch": float(coef[1])}, float(err.max())


def fit_mlp(points: list[dict]) -> tuple[dict, float]:
    """Least-squares constants of cycles = k_bits*K*b + k_rows*R + k_cols*C + k_tile."""
    a = np.array([[p["k"] * p["wbits"], p["rows"], p["cols"], 1.0] for p in points])
    y = np.array([p["cycles"] for p in points], dtype=float)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    coef = np.round(coef, 9)
    err = np.abs(a @ coef - y) / y * 100
    names = ("k_bits", "k_rows", "k_cols", "k_tile")
    return dict(zip(names, map(float, coef), strict=True)), float(err.max())


def calibrate() -> dict:
    mlp_points = sweep_mlp_engine()
    mlp_consts, mlp_err = fit_mlp(mlp_points)
    heu_points = sweep_heu()
    heu_consts, heu_err = fit_heu(heu_points)
    core_points, loads = sweep_core()
    core_consts, core_err = fit_core(core_points, {**mlp_consts, **heu_consts})
    config_consts, config_err = fit_config(loads)
    consts = {**mlp_consts, **heu_consts, **core_consts, **config_consts}
    Calibrated(**consts)  # validates the set of names
    return {
        "constants": consts,
        "max_error_pct": {"mlp_engine": mlp_err, "heu": heu_err, "core": core_err, "config": config_err},
        "rtl_fingerprint": rtl_fingerprint(),
        "points": {"mlp_engine": mlp_points, "heu": heu_points, "core": core_points, "config": loads},
    }


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m sim_py.calibrate", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=CALIBRATION_FILE, help="the calibration JSON file to write")
    a = ap.parse_args(argv)
    if a.out.is_dir():  # refused before the sweeps, not after them
        ap.error(f"--out {a.out}: is a folder, expected a JSON file name")
    try:
        atomic.check_folder(a.out.parent)
    except atomic.OutputError as e:
        ap.error(f"--out {a.out}: cannot write there ({e})")
    result = calibrate()
    atomic.write_json(a.out, result)
    c, e = result["constants"], result["max_error_pct"]
    print(f"MLP tile: cycles = {c['k_bits']:g}*K*b + {c['k_rows']:g}*R + {c['k_cols']:g}*C + {c['k_tile']:g}"
          f"   ({len(result['points']['mlp_engine'])} points, max error {e['mlp_engine']:.4f}%)")
    print(f"HEU batch: cycles = n*{c['k_lookup']:g}*8L + {c['k_batch']:g}"
          f"   ({len(result['points']['heu'])} points, max error {e['heu']:.4f}%)")
    print(f"core: schedule with {c['k_result']:g} cycles per result, {c['k_issue']:g} before a batch's first tile"
          f"   ({len(result['points']['core'])} streams, max error {e['core']:.4f}%)")
    print(f"config: cycles = {c['k_config']:g} * records   ({len(result['points']['config'])} loads, "
          f"max error {e['config']:.4f}%)")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
