"""Hard-sample mining (Korhonen et al.) against the plain baseline, same scene, same preset, per seed.

For each of --seeds seeds, each variant trains in its own subprocess for the same budget; PSNR on a
fixed set of test views is sampled along the way (evaluation time excluded). Reported per seed:
- the time ratio at a PSNR both runs pass well before their end: the lower of the two final PSNRs
  minus --margin dB, read where each (interpolated) curve first reaches it; hard mining's time over
  the baseline's. A crossing where both curves are flat (the final PSNR) moves with noise; this one
  is read on the rising part of both curves.
- the older figure too: the time mining needs to reach the baseline's final PSNR, as a share of the
  baseline's budget.
The last line gives the median over seeds, and the spread (min and max).
And the ratio of peak step memory.
Peak step memory = the largest total of tensors saved for backward in one step (activation memory,
what mining reduces); the peak RSS of each process is printed as well.

Usage: python -m bench.hard_samples [--data PATH] [--downscale N] [--minutes 2] [--keep 0.25]
                                    [--unit samples|rays] [--seeds 3] [--margin 1.0]
Last line: time_ratio=<median> time_ratio_min=<min> time_ratio_max=<max> final_ratio=<median>
peak_mem_ratio=<m> seeds=<n>
"""

from __future__ import annotations

import argparse
import json
import time

from bench.worker import run_json
from hero import cli


def vm_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def worker(a) -> None:
    import torch

    from hero.train import Trainer, default_config

    cfg = default_config(data=a.data, preset="cpu", downscale=a.downscale, minutes=a.minutes, seed=a.seed,
                         hard_mining=a.variant == "hard", hard_unit=a.unit, hard_keep=a.keep, progress=False)
    tr = Trainer(cfg)
    saved = {"now": 0, "peak": 0}

    def pack(t):
        saved["now"] += t.numel() * t.element_size()
        return t

    curve = [(0.0, 0, tr.evaluate(tr.test_scene, a.views)["psnr"])]
    rss0 = vm_kb("VmRSS")
    next_eval = a.every
    while not tr.done():
        saved["now"] = 0
        t0 = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            tr.train_step()
        tr.train_seconds += time.perf_counter() - t0
        saved["peak"] = max(saved["peak"], saved["now"])
        if tr.train_seconds >= next_eval or tr.done():
            next_eval += a.every
            curve.append((tr.train_seconds, tr.step, tr.evaluate(tr.test_scene, a.views)["psnr"]))
    print(json.dumps({"curve": curve, "saved_peak": saved["peak"], "rss_peak_kb": vm_kb("VmHWM"),
                      "rss_setup_kb": rss0, "steps": tr.step}))


def time_to_reach(curve, target: float) -> float | None:
    """First time the (linearly interpolated) curve reaches target."""
    for (t0, _, p0), (t1, _, p1) in zip(curve, curve[1:], strict=False):
        if p1 >= target:
            return t1 if p1 == p0 or p0 >= target else t0 + (target - p0) / (p1 - p0) * (t1 - t0)
    return None


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.hard_samples")
    ap.add_argument("--data", default="procedural")
    ap.add_argument("--downscale", type=cli.downscale, default=1, help="images at 1/N resolution, or auto (default 1)")
    ap.add_argument("--minutes", type=cli.number(float, lo=0, lo_open=True), default=2.0,
                    help="training budget of each variant")
    ap.add_argument("--keep", type=cli.number(float, lo=0, hi=1, lo_open=True), default=0.25,
                    help="share of each batch's samples that get a backward, in (0, 1]")
    ap.add_argument("--views", type=cli.number(int, lo=1), default=4, help="test views for the PSNR curve")
    ap.add_argument("--every", type=cli.number(float, lo=0, lo_open=True), default=10.0,
                    help="seconds of training between curve points")
    ap.add_argument("--seed", type=cli.number(int, lo=0), default=0, help="first seed")
    ap.add_argument("--seeds", type=cli.number(int, lo=1), default=3, help="seeds (runs of each variant), default 3")
    ap.add_argument("--margin", type=cli.number(float, lo=0, hi=20, lo_open=True), default=1.0,
                    help="dB below the lower final PSNR where the time ratio is read, in (0, 20], default 1.0")
    ap.add_argument("--unit", choices=["samples", "rays"], default="samples", help="what mining selects")
    ap.add_argument("--variant", choices=["base", "hard"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.variant:
        try:
            worker(a)
        except ValueError as e:  # DataError: the scene; a --downscale it cannot take
            return cli.refuse(str(e))
        return 0
    if a.data == "procedural":
        from hero.train import resolve_data

        a.data = str(resolve_data("procedural"))
    per_seed = []
    for k in range(a.seeds):
        res = {}
        for v in ("base", "hard"):
            args = ["--variant", v, "--data", a.data, "--downscale", str(a.downscale), "--minutes", str(a.minutes),
                    "--keep", str(a.keep), "--views", str(a.views), "--every", str(a.every), "--seed", str(a.seed + k),
                    "--unit", a.unit]
            print(f"seed {a.seed + k}: running {v} ({a.minutes} min of training) ...", flush=True)
            res[v] = run_json("bench.hard_samples", args)
        per_seed.append(report_seed(a, a.seed + k, res["base"], res["hard"]))
    ratios = sorted(p["ratio"] for p in per_seed)
    finals = sorted(p["final_ratio"] for p in per_seed)
    mems = sorted(p["mem"] for p in per_seed)
    print(f"\n{'seed':>4} {'target dB':>10} {'baseline s':>11} {'mining s':>9} {'ratio':>7} {'at final':>9}")
    for p in per_seed:
        print(f"{p['seed']:>4} {p['target']:>10.2f} {p['t_base']:>11.1f} {p['t_hard']:>9.1f} {p['ratio']:>7.2f} "
              f"{p['final_ratio']:>9.2f}")
    print(f"time_ratio={median(ratios):.2f} time_ratio_min={ratios[0]:.2f} time_ratio_max={ratios[-1]:.2f} "
          f"final_ratio={median(finals):.2f} peak_mem_ratio={median(mems):.2f} seeds={len(per_seed)}")
    return 0


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def report_seed(a, seed: int, base: dict, hard: dict) -> dict:
    """One seed's curves, printed, and its figures."""
    print(f"\nseed {seed}: PSNR on {a.views} test views vs training time ({a.data}, cpu preset, "
          f"hard mining keeps {a.keep:.0%} of the {a.unit})")
    print(f"{'baseline s':>10} {'PSNR':>7}   {'mining s':>9} {'PSNR':>7}")
    for i in range(max(len(base["curve"]), len(hard["curve"]))):
        b = base["curve"][i] if i < len(base["curve"]) else None
        h = hard["curve"][i] if i < len(hard["curve"]) else None
        print((f"{b[0]:10.1f} {b[2]:7.2f}" if b else " " * 18) + "   " + (f"{h[0]:9.1f} {h[2]:7.2f}" if h else ""))
    target = min(base["curve"][-1][2], hard["curve"][-1][2]) - a.margin
    t_base, t_hard = time_to_reach(base["curve"], target), time_to_reach(hard["curve"], target)
    final = base["curve"][-1][2]
    t_final = time_to_reach(hard["curve"], final)
    final_ratio = t_final / base["curve"][-1][0] if t_final is not None else float("inf")
    mem = hard["saved_peak"] / base["saved_peak"]
    print(f"both reach {target:.2f} dB: baseline after {t_base:.1f} s, mining after {t_hard:.1f} s; baseline's final "
          f"{final:.2f} dB ({base['steps']} steps): mining "
          + (f"after {t_final:.1f} s" if t_final is not None else "never within its budget")
          + f" ({hard['steps']} steps, final {hard['curve'][-1][2]:.2f} dB)")
    print(f"peak step memory (tensors saved for backward): baseline {base['saved_peak'] / 2**20:.1f} MiB, "
          f"mining {hard['saved_peak'] / 2**20:.1f} MiB; peak RSS: baseline {base['rss_peak_kb'] / 1024:.0f} MiB, "
          f"mining {hard['rss_peak_kb'] / 1024:.0f} MiB")
    return {"seed": seed, "target": target, "t_base": t_base, "t_hard": t_hard, "ratio": t_hard / t_base,
            "final_ratio": final_ratio, "mem": mem}


if __name__ == "__main__":
    raise SystemExit(main())
