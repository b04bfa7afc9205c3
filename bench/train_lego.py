"""Lego at 200x200 (downscale 2), cpu preset, 10 minutes of training on this machine.

Prints the PSNR-versus-training-time curve (on the first 25 test views at the end, and on a few test
views along the way), saves it as a PNG, and ends with `psnr_db=<x> minutes=<m>`.
Usage: python -m bench.train_lego [--data PATH] [--downscale 2] [--minutes 10] [--out runs/bench_lego]
"""

from __future__ import annotations

from bench.training_curve import SHARED_DATA, arguments, run

LEGO = str(SHARED_DATA / "nerf_synthetic" / "lego")
DOWNSCALE = 2  # the benchmark's figures are at 200x200


def main(argv=None) -> int:
    a = arguments("python -m bench.train_lego", LEGO, "runs/bench_lego", 25, DOWNSCALE).parse_args(argv)
    title = "lego 200x200" if a.downscale == DOWNSCALE else f"lego, --downscale {a.downscale}"
    return run(a, f"{title}, cpu preset", {"30 dB": 30.0})


if __name__ == "__main__":
    raise SystemExit(main())
