"""Lego at 200x200 (downscale 2), cpu preset, 10 minutes of training on this machine.

Prints the PSNR-versus-training-time curve (on the first 25 test views at the end, and on a few test
views along the way), saves it as a PNG, and ends with `psnr_db=<x> minutes=<m>`.
Usage: python -m bench.train_lego [--data PATH] [--minutes 10] [--out runs/bench_lego]
"""

from __future__ import annotations

from bench.training_curve import SHARED_DATA, arguments, run

LEGO = str(SHARED_DATA / "nerf_synthetic" / "lego")


def main(argv=None) -> int:
    a = arguments("python -m bench.train_lego", LEGO, "runs/bench_lego", 25).parse_args(argv)
    return run(a, 2, "lego 200x200, cpu preset", {"30 dB": 30.0})


if __name__ == "__main__":
    raise SystemExit(main())
