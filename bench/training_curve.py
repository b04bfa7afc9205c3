"""One timed training run of the cpu preset: its PSNR-versus-time curve as a table and a PNG, and the
benchmark's last line `psnr_db=<x> minutes=<m>` (bench.train_lego, bench.train_fern)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from hero import cli

#: ../shared beside the checkout holds the datasets (read-only; never copied into the repo).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def arguments(prog: str, data: str, out: str, test_views: int | None, downscale: int) -> argparse.ArgumentParser:
    ap = cli.ArgumentParser(prog=prog)
    ap.add_argument("--data", default=data)
    ap.add_argument("--downscale", type=cli.downscale, default=downscale,
                    help=f"images at 1/N resolution, or auto (default {downscale}: the benchmark's figures)")
    ap.add_argument("--minutes", type=cli.number(float, lo=0, lo_open=True), default=10.0)
    ap.add_argument("--out", default=out)
    ap.add_argument("--test-views", type=cli.number(int, lo=1), default=test_views,
                    help="views of the final PSNR (default: all)")
    ap.add_argument("--curve-every", type=cli.number(float, lo=0, lo_open=True), default=60.0,
                    help="seconds of training between curve points")
    ap.add_argument("--curve-views", type=cli.number(int, lo=1), default=3)
    ap.add_argument("--keep", action="store_true", help="resume an existing run instead of starting afresh")
    return ap


def run(a: argparse.Namespace, title: str, refs: dict[str, float]) -> int:
    """Train `a.data` at `a.downscale` for `a.minutes`; print and plot the curve; `refs` are published
    PSNRs drawn as lines (name -> dB)."""
    from hero import atomic
    from hero.train import train

    out = Path(a.out)
    try:
        atomic.check_folder(out)
        if out.exists() and not a.keep:
            shutil.rmtree(out)
        res = train({"data": a.data, "preset": "cpu", "out": str(out), "downscale": a.downscale,
                     "minutes": a.minutes, "test_views": a.test_views, "curve_every_s": a.curve_every,
                     "eval_views": a.curve_views, "ckpt_every": 0, "progress": True})
    except ValueError as exc:  # DataError, CheckpointError, OutputError and bad settings
        return cli.refuse(str(exc))
    curve = [(t, s, p) for t, s, p in res["curve"]]
    print(f"\nPSNR vs training time ({title}; curve on the first {a.curve_views} test views)")
    print(f"{'minutes':>8} {'steps':>7} {'PSNR dB':>8}")
    for t, s, p in curve:
        print(f"{t / 60:8.2f} {s:7d} {p:8.2f}")
    minutes = res["train_seconds"] / 60
    print(f"final: {res['test_views']} test views  PSNR {res['psnr']:.2f} dB  SSIM {res['ssim']:.4f}  "
          f"after {minutes:.2f} min, {res['steps']} steps")
    for name, db in refs.items():
        print(f"  published: {name} {db:.1f} dB")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([t / 60 for t, _, _ in curve], [p for _, _, p in curve], "o-", label=f"{a.curve_views} test views")
    ax.plot([minutes], [res["psnr"]], "r*", ms=12, label=f"final, {res['test_views']} test views")
    for name, db in refs.items():
        ax.axhline(db, color="gray", ls="--", lw=1)
        ax.text(0, db, f" {name}", va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("training time (min, 2 CPU cores)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic.save_figure(out / "psnr_curve.png", fig, dpi=120)
    print(f"curve: {out / 'psnr_curve.png'}")
    print(f"psnr_db={res['psnr']:.2f} minutes={minutes:.2f}")
    return 0
