"""python -m hero.caq --ckpt CKPT --out DIR: CAQ's learned bit widths for a trained NeRF.

Writes DIR/policy.json (CAQ's widths as a hero-policy/1 file), DIR/metrics.json (CAQ's own test PSNR
from its fake-quantized model, its 15 bit widths, mean bit width, model size and BitOps) and test
renders. Re-running the same command resumes from DIR/caq_state.pt; Ctrl-C saves and stops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero import cli

from .run import CAQ_STEPS, TARGETS


def parser() -> argparse.ArgumentParser:
    ap = cli.ArgumentParser(prog="python -m hero.caq", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="a checkpoint from python -m hero.train")
    ap.add_argument("--out", type=Path, required=True, help="results folder; rerunning the same command resumes")
    ap.add_argument("--target", choices=TARGETS, default="mgl",
                    help="mdl: keep the float model's loss; mgl: reach --psnr-target (default)")
    ap.add_argument("--psnr-target", type=cli.number(float, lo=0, hi=100, lo_open=True), default=30.0,
                    help="MGL's PSNR target in dB, in (0, 100] (default 30)")
    ap.add_argument("--lambda", dest="lam", type=cli.number(float, lo=0), default=1e-3,
                    help="weight of the bit penalty, >= 0 (1e-3)")
    ap.add_argument("--steps", type=cli.number(int, lo=1), default=CAQ_STEPS, help=f"QAT steps (CAQ: {CAQ_STEPS})")
    ap.add_argument("--rays", type=cli.number(int, lo=1), default=4096, help="rays per step (CAQ: 4096)")
    ap.add_argument("--calib-batches", type=cli.number(int, lo=1), default=100,
                    help="PTQ calibration batches (CAQ: about 100)")
    ap.add_argument("--test-views", type=cli.number(int, lo=1), default=5, help="test views for CAQ's own PSNR")
    ap.add_argument("--seed", type=cli.number(int, lo=0), default=0)
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv=None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.ckpt.is_dir():
        ap.error(f"--ckpt {a.ckpt}: is a folder, expected a checkpoint file (.pt)")
    if not a.ckpt.is_file():
        ap.error(f"--ckpt {a.ckpt}: no such file")
    from hero import atomic
    from hero.data import DataError

    from .run import caq

    try:
        atomic.check_folder(a.out)
        res = caq(a.ckpt, a.out, target=a.target, psnr_target=a.psnr_target, lam=a.lam, steps=a.steps, rays=a.rays,
                  seed=a.seed, calib_batches=a.calib_batches, test_views=a.test_views, progress=not a.no_progress)
    except KeyboardInterrupt as e:  # hero.interrupt.Interrupted: the state is saved
        return cli.interrupted(e)
    except (DataError, ValueError) as e:
        return cli.refuse(str(e))
    b = res["bits"]
    print(f"CAQ {a.target}: own test PSNR {res['psnr']:.2f} dB (SSIM {res['ssim']:.3f}), mean bits "
          f"{res['mean_bits']:.2f}, size {res['size_kib']:.1f} KiB, {res['bitops_t']:.3f} TBitOps per image")
    print("bits: " + ", ".join(f"{k} {v}" for k, v in b.items()))
    print(f"policy: {a.out / 'policy.json'}; metrics: {a.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
