"""python -m hero.search --hw rtl_calibrated: mixed-precision policy search for a trained NeRF.

With no --ckpt, a cpu-preset NeRF of --data (default: the project's procedural scene) is trained
first into <out>/nerf, at --downscale (auto: hero.train's rule). Re-running the same command resumes:
finished episodes are kept; Ctrl-C saves them first. --method picks who proposes the policies (DDPG, the
default, or random, greedy, tpe, nsga2), --evaluations how many each gets (docs/search.md#methods).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero import cli
from hero.data.scene import AUTO
from hero.search.methods import METHODS
from hero.search.score import OBJECTIVES
from sim_py.backends import BACKENDS


def parser() -> argparse.ArgumentParser:
    ap = cli.ArgumentParser(prog="python -m hero.search", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="procedural", help="scene folder, or 'procedural' (default)")
    ap.add_argument("--ckpt", type=Path, default=None, help="a trained checkpoint (default: train one)")
    ap.add_argument("--downscale", type=cli.downscale, default=AUTO,
                    help="images at 1/N resolution when training from --data (auto: the longest side at most the "
                         "cpu preset's size); with --ckpt the checkpoint's own factor is used")
    ap.add_argument("--hw", choices=BACKENDS, default="rtl_calibrated", help="cycle-model backend")
    ap.add_argument("--hw-preset", default="fpga_ecp5", help="hardware preset name or TOML file (fpga_ecp5)")
    ap.add_argument("--method", choices=METHODS, default="ddpg",
                    help="search method: ddpg (the paper's, default), random, greedy, tpe, nsga2, or caq (the A-CAQ "
                         "baseline: hero.caq's learned policy, scored once) (docs/search.md)")
    ap.add_argument("--episodes", type=cli.number(int, lo=1), default=60,
                    help="DDPG episodes (other methods: see --evaluations)")
    ap.add_argument("--evaluations", type=cli.number(int, lo=1), default=None,
                    help="policy evaluations the method gets, refinement included (default: DDPG runs --episodes "
                         "and refines to convergence; the other methods get 3 x --episodes)")
    ap.add_argument("--latency-budget", type=cli.number(float, lo=0, lo_open=True), default=None,
                    help="frame latency budget in ms")
    ap.add_argument("--size-budget", type=cli.number(float, lo=0, lo_open=True), default=None,
                    help="model size budget in KiB")
    ap.add_argument("--objective", choices=OBJECTIVES, default="latency",
                    help="what the reward trades against PSNR: frame latency, or cost = latency x size "
                         "(default: latency)")
    ap.add_argument("--latency-weight", type=cli.number(float, lo=0), default=3.0,
                    help="reward dB per unit of latency/latency_8bit, or with --objective cost of cost/cost_8bit")
    ap.add_argument("--seed", type=cli.number(int, lo=0), default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/search"))
    ap.add_argument("--train-minutes", type=cli.number(float, lo=0, lo_open=True), default=4.0,
                    help="training time when no --ckpt is given")
    ap.add_argument("--levelled-warmup", action="store_true",
                    help="DDPG's warm-up episodes each around one random level instead of HAQ's independent random "
                         "actions (docs/search.md)")
    ap.add_argument("--sensitivity-obs", action="store_true",
                    help="DDPG also observes each unit's sensitivity: its output perturbation at 4 bits on the "
                         "calibration samples (docs/search.md)")
    ap.add_argument("--refine-passes", type=cli.number(int, lo=0), default=10,
                    help="most greedy one-bit passes over the agent's best policy; stops at a pass with no move "
                         "(0: off)")
    ap.add_argument("--qat-steps", type=cli.number(int, lo=0), default=200, help="final QAT of the found policy")
    ap.add_argument("--held-out-rays", type=cli.number(int, lo=64), default=16384,
                    help="rays of held-out views scoring each episode")
    ap.add_argument("--test-views", type=cli.number(int, lo=1), default=5, help="test views in the summary")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv=None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.method == "ddpg" and a.evaluations is not None and a.evaluations < a.episodes:
        ap.error(f"--evaluations {a.evaluations}: fewer than --episodes {a.episodes} (DDPG's episodes count in it)")
    if a.ckpt is not None and a.ckpt.is_dir():
        ap.error(f"--ckpt {a.ckpt}: is a folder, expected a checkpoint file (.pt)")
    if a.ckpt is not None and not a.ckpt.is_file():
        ap.error(f"--ckpt {a.ckpt}: no such file")
    from hero import atomic, checkpoint
    from hero.data import DataError
    from hero.quant.policy import PolicyError
    from sim_py.backends import CalibrationError
    from sim_py.hw import HardwareError, load_hardware

    try:
        atomic.check_folder(a.out)
        load_hardware(a.hw_preset)
        if a.ckpt is not None:
            check_downscale(a.downscale, checkpoint.check_train_state(checkpoint.load_state(a.ckpt), a.ckpt), a.ckpt)
        ckpt = a.ckpt or train_default(a.data, a.out / "nerf", a.train_minutes, not a.no_progress, a.downscale)
        from .run import search

        summary = search(ckpt, a.out, hw=a.hw, hw_preset=a.hw_preset, episodes=a.episodes,
                         latency_budget=a.latency_budget, size_budget_kib=a.size_budget, seed=a.seed,
                         latency_weight=a.latency_weight, held_out=a.held_out_rays, qat_steps=a.qat_steps,
                         test_views=a.test_views, refine_passes=a.refine_passes,
                         progress=not a.no_progress, objective=a.objective, method=a.method,
                         evaluations=a.evaluations, levelled_warmup=a.levelled_warmup,
                         sensitivity_obs=a.sensitivity_obs)
    except KeyboardInterrupt as e:  # hero.interrupt.Interrupted: the finished episodes (or steps) are saved
        return cli.interrupted(e)
    except (DataError, HardwareError, PolicyError, CalibrationError, ValueError) as e:
        return cli.refuse(str(e))
    r = summary["results"]
    info = summary["search"]
    print(f"\nmethod: {info['method']}, {info['evaluations']} evaluations, best reward {info['best_reward']:.4f}, "
          f"Pareto set of {len(info['pareto'])} policies (hypervolume {info['hypervolume']:.4f})")
    print(f"objective: {summary['objective']} (latency weight {summary['latency_weight']:g})")
    print(f"{'':<11}{'PSNR dB':>9}{'SSIM':>8}{'latency ms':>12}{'size KiB':>11}{'cost ms*MiB':>13}"
          f"{'fps/MiB':>10}")
    for name in ("fp32", "uniform8", "uniform4", *(["found_ddpg"] if info["method"] == "ddpg" else []), "found",
                 "found_qat"):
        x = r[name]
        print(f"{name:<11}{x['psnr']:>9.2f}{x['ssim']:>8.3f}{x['latency_ms']:>12.3f}{x['size_kib']:>11.1f}"
              f"{x['cost']:>13.3f}{x['cost_efficiency']:>10.4f}")
    print(f"found policy: {a.out / 'policy.json'}; results in {a.out} ({summary['minutes']:.1f} min)")
    return 0


def check_downscale(downscale, st: dict, ckpt: Path) -> None:
    """A checkpoint is scored on its scene at its own factor: a --downscale given must be that one."""
    own = st["config"]["downscale"]
    if downscale != AUTO and downscale != own:
        raise ValueError(f"--downscale {downscale}: {ckpt} was trained at --downscale {own}, and it is scored at "
                         f"that factor; drop --downscale or give {own}")


def train_default(data: str, out: Path, minutes: float, progress: bool, downscale=AUTO) -> Path:
    """A cpu-preset checkpoint of `data` in `out`, trained (or resumed) for `minutes` if not there; a
    finished one must be of the same scene and factor."""
    from hero import checkpoint
    from hero.train import check_resume, default_config, resolve_data, train

    cfg = default_config(data=data, preset="cpu", out=str(out), minutes=minutes, progress=progress, test_views=5,
                         downscale=downscale)
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file() and (out / "metrics.json").is_file():
        check_resume(cfg, checkpoint.check_train_state(checkpoint.load_state(ckpt), ckpt), ckpt, resolve_data(data))
        return ckpt
    return Path(train(cfg)["checkpoint"])


if __name__ == "__main__":
    raise SystemExit(main())
