"""LLFF fern at 1/8 (images_8/, 504x378), cpu preset, 10 minutes of training on this machine.

A real forward-facing phone capture (20 views; NDC rays). PSNR on LLFF's held-out views (every 8th
image: the loader's test split), beside the published figures after far longer training: NeRF
25.2 dB (Mildenhall et al., 2020), Plenoxels 25.5 dB (Fridovich-Keil et al., 2022). Prints the
curve, saves it as a PNG, and ends with `psnr_db=<x> minutes=<m>`.
Usage: python -m bench.train_fern [--data PATH] [--downscale 8] [--minutes 10] [--out runs/bench_fern]
"""

from __future__ import annotations

from bench.training_curve import SHARED_DATA, arguments, run

FERN = str(SHARED_DATA / "nerf_llff_data" / "fern")
PUBLISHED = {"NeRF": 25.2, "Plenoxels": 25.5}  # after far longer training
DOWNSCALE = 8  # the benchmark's figures are at 1/8


def main(argv=None) -> int:
    a = arguments("python -m bench.train_fern", FERN, "runs/bench_fern", None, DOWNSCALE).parse_args(argv)
    title = "fern 504x378 (LLFF, 1/8)" if a.downscale == DOWNSCALE else f"fern (LLFF, --downscale {a.downscale})"
    return run(a, f"{title}, cpu preset", PUBLISHED)


if __name__ == "__main__":
    raise SystemExit(main())
