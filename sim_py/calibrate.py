"""`make calibrate`: fit the cycle model's constants to Verilator cycle counts.

    python -m sim_py.calibrate [--out sim_py/calibration/rtl_calibrated.json]

Runs cocotb/Verilator sweeps of the MLP engine (several array shapes, K, weight bits) and of the
hash encoding unit (batch sizes, levels), fits the constants of sim_py/backends.py by least
squares, and writes them with the sweep points, the per-point error and a fingerprint of the RTL
that was swept. tests/test_calibration.py fails, naming `make calibrate`, once the RTL's Verilog
no longer matches that fingerprint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from hero import atomic
from rtl.gen import heu, mlp_engine, to_verilog

from .backends import CALIBRATION_FILE, Calibrated

#: (rows, cols, max_wbits) swept for the fit; bench.cycle_model holds other shapes out.
MLP_FIT_SHAPES = ((8, 8, 8), (4, 4, 8), (2, 6, 4), (6, 3, 6))
MLP_FIT_KS = (1, 5, 16, 64)
#: (levels, features, log2t, word_bits) of the HEU, and batch sizes, swept for the fit.
HEU_FIT_SHAPES = ((1, 2, 8, 32), (2, 2, 8, 32), (4, 2, 8, 32))
HEU_FIT_POINTS = (1, 5, 16)


def rtl_fingerprint() -> dict[str, str]:
    """sha256 of the Verilog of every calibrated configuration."""
    out = {}
    for rows, cols, wb in MLP_FIT_SHAPES:
        text = to_verilog(mlp_engine(rows, cols, wb), "mlp_engine")
        out[f"mlp_engine_{rows}x{cols}w{wb}"] = hashlib.sha256(text.encode()).hexdigest()
    for levels, f, log2t, w in HEU_FIT_SHAPES:
        text = to_verilog(heu(levels, f, log2t, w), "heu")
        out[f"heu_L{levels}F{f}T{log2t}W{w}"] = hashlib.sha256(text.encode()).hexdigest()
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


def fit_heu(points: list[dict]) -> tuple[dict, float]:
    """Least-squares constants of cycles = n * k_lookup * 8L + k_batch."""
    a = np.array([[p["n"] * 8 * p["levels"], 1.0] for p in points])
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
    consts = {**mlp_consts, **heu_consts}
    Calibrated(**consts)  # validates the set of names
    return {
        "constants": consts,
        "max_error_pct": {"mlp_engine": mlp_err, "heu": heu_err},
        "rtl_fingerprint": rtl_fingerprint(),
        "points": {"mlp_engine": mlp_points, "heu": heu_points},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim_py.calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    a = ap.parse_args(argv)
    result = calibrate()
    atomic.write_json(a.out, result)
    c, e = result["constants"], result["max_error_pct"]
    print(f"MLP tile: cycles = {c['k_bits']:g}*K*b + {c['k_rows']:g}*R + {c['k_cols']:g}*C + {c['k_tile']:g}"
          f"   ({len(result['points']['mlp_engine'])} points, max error {e['mlp_engine']:.4f}%)")
    print(f"HEU batch: cycles = n*{c['k_lookup']:g}*8L + {c['k_batch']:g}"
          f"   ({len(result['points']['heu'])} points, max error {e['heu']:.4f}%)")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
