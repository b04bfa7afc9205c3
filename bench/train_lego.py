"""Lego at 200x200 (downscale 2), cpu preset, 10 minutes of training on this machine.

Prints the PSNR-versus-training-time curve (on the first 25 test views at the end, and on a few test
views along the way), saves it as a PNG, and ends with `psnr_db=<x> minutes=<m>`.
Usage: python -m bench.train_lego [--data PATH] [--minutes 10] [--out runs/bench_lego]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

#: ../shared beside the checkout holds the lego copy (read-only; never copied into the repo).
LEGO = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "nerf_synthetic" / "lego")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.train_lego")
    ap.add_argument("--data", default=LEGO)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", default="runs/bench_lego")
    ap.add_argument("--test-views", type=int, default=25)
    ap.add_argument("--curve-every", type=float, default=60.0, help="seconds of training between curve points")
    ap.add_argument("--curve-views", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="resume an existing run instead of starting afresh")
    a = ap.parse_args(argv)

    from hero.data import DataError
    from hero.train import train

    out = Path(a.out)
    if out.exists() and not a.keep:
        shutil.rmtree(out)
    try:
        res = train({"data": a.data, "preset": "cpu", "out": str(out), "downscale": 2, "minutes": a.minutes,
                     "test_views": a.test_views, "curve_every_s": a.curve_every, "eval_views": a.curve_views,
                     "ckpt_every": 0, "progress": True})
    except DataError as exc:
        print(f"error: {exc}")
        return 2
    curve = [(t, s, p) for t, s, p in res["curve"]]
    print(f"\nPSNR vs training time (lego 200x200, cpu preset; curve on the first {a.curve_views} test views)")
    print(f"{'minutes':>8} {'steps':>7} {'PSNR dB':>8}")
    for t, s, p in curve:
        print(f"{t / 60:8.2f} {s:7d} {p:8.2f}")
    minutes = res["train_seconds"] / 60
    print(f"final: {res['test_views']} test views  PSNR {res['psnr']:.2f} dB  SSIM {res['ssim']:.4f}  "
          f"after {minutes:.2f} min, {res['steps']} steps")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([t / 60 for t, _, _ in curve], [p for _, _, p in curve], "o-", label=f"{a.curve_views} test views")
    ax.plot([minutes], [res["psnr"]], "r*", ms=12, label=f"final, {res['test_views']} test views")
    ax.axhline(30, color="gray", ls="--", lw=1)
    ax.set_xlabel("training time (min, 2 CPU cores)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("lego 200x200, cpu preset")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "psnr_curve.png", dpi=120)
    print(f"curve: {out / 'psnr_curve.png'}")
    print(f"psnr_db={res['psnr']:.2f} minutes={minutes:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
