"""The search methods at equal budget, through hero.sweep (docs/search.md#methods).

    python -m bench.search_methods [--scenes procedural lego] [--seeds 0 1 2] [--evaluations 60]

Scenes: the procedural scene (bench.hero_vs_caq's cpu-preset checkpoint of 1000 steps,
`runs/bench_procedural/checkpoint.pt`, or the same trained once by the sweep when it is missing) and
lego (`runs/bench_lego/checkpoint.pt`, from `python -m bench.train_lego`); `fpga_ecp5`,
rtl_calibrated; seeds 0, 1, 2; every method of `hero.search --method` with the same number of policy
evaluations (DDPG: `--episodes` episodes, its refinement the rest). Per method:
- best reward (held-out rays), and its share of the way from uniform 8-bit's reward to the best
  reward any method found on the same scene and seed ("score", 1 = the best);
- hypervolume of the PSNR-latency Pareto set of all its evaluations, in the fixed frame latency /
  uniform-8 latency against PSNR - FP32 PSNR, reference point (1, -5 dB) (hero/search/front.py);
- evaluations to reach 99% of that best reward's gain over uniform 8-bit (median over scenes and seeds);
- wall time per job (search, final QAT and test-view scoring).
Last line: ddpg_reward_gap_pct=<g> ddpg_hv_ratio=<h> best_method=<name>, where g is 100 x the mean over
scenes and seeds of (R_best - R_ddpg) / (R_any - R_uniform8) for the method of the best mean score, and
h the ratio of DDPG's mean hypervolume to that method's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench import flags
from hero import atomic, cli
from hero.search.methods import METHODS
from hero.sweep.report import cells

ROOT = Path(__file__).resolve().parents[1]
LEGO_CKPT = ROOT / "runs" / "bench_lego" / "checkpoint.pt"
PROCEDURAL_CKPT = ROOT / "runs" / "bench_procedural" / "checkpoint.pt"
PROCEDURAL_STEPS = 1000


def sweep_toml(a) -> str:
    lines = [f"out = {json.dumps(str(a.out.resolve()))}", f"hardware = {json.dumps(a.hw_presets)}",
             f"seeds = {json.dumps(a.seeds)}", f"methods = {json.dumps(a.methods)}", ""]
    for scene in a.scenes:
        lines.append("[[scenes]]")
        if scene == "lego":
            lines += ['name = "lego"', f"ckpt = {json.dumps(str(a.lego_ckpt.resolve()))}"]
        elif a.procedural_ckpt.is_file():
            lines += ['name = "procedural"', f"ckpt = {json.dumps(str(a.procedural_ckpt.resolve()))}"]
        else:
            lines += ['data = "procedural"', 'preset = "cpu"', f"train_steps = {PROCEDURAL_STEPS}"]
        lines.append("")
    lines += ["[search]", f"episodes = {a.episodes}", f"evaluations = {a.evaluations}",
              f"held_out_rays = {a.held_out_rays}", f"refine_passes = {a.refine_passes}",
              f"qat_steps = {a.qat_steps}", f"test_views = {a.test_views}", 'backend = "rtl_calibrated"',
              f"levelled_warmup = {json.dumps(a.levelled_warmup)}",
              f"sensitivity_obs = {json.dumps(a.sensitivity_obs)}", ""]
    return "\n".join(lines)


def aggregate(rows: list[dict], methods: list[str]) -> dict:
    """Per method: mean score, best reward, hypervolume, evaluations to 99%, minutes; over every cell."""
    groups = cells(rows)
    per = {m: {"score": [], "reward": [], "hv": [], "reach": [], "cells": 0, "minutes": []} for m in methods}
    complete = []
    for key, group in groups.items():
        by = {r["method"]: r for r in group}
        if set(by) != set(methods):  # a failed job: the cell is left out of the comparison
            continue
        complete.append(key)
        best = max(r["best_reward"] for r in group)
        u8 = group[0]["reward_uniform8"]
        for m, r in by.items():
            p = per[m]
            p["score"].append((r["best_reward"] - u8) / (best - u8) if best > u8 else 1.0)
            p["reward"].append(r["best_reward"])
            p["hv"].append(r["hypervolume"])
            p["reach"].append(r.get("evals_to_99"))
            p["minutes"].append(r["minutes"])
            p["cells"] += 1
    return {"per": per, "cells": complete}


def table(per: dict, title: str) -> list[str]:
    lines = [title, f"{'method':<8}{'cells':>6}{'score':>8}{'best reward':>13}{'hypervolume':>13}"
                    f"{'evals to 99%':>14}{'reached':>9}{'min/job':>9}"]
    for m, p in per.items():
        if not p["cells"]:
            lines.append(f"{m:<8}{0:>6}")
            continue
        reached = [x for x in p["reach"] if x is not None]
        share = f"{len(reached)}/{p['cells']}"
        lines.append(f"{m:<8}{p['cells']:>6}{statistics.mean(p['score']):>8.3f}{statistics.mean(p['reward']):>13.4f}"
                     f"{statistics.mean(p['hv']):>13.4f}"
                     f"{(statistics.median(reached) if reached else float('nan')):>14.1f}"
                     f"{share:>9}{statistics.mean(p['minutes']):>9.2f}")
    return lines


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.search_methods", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", choices=["procedural", "lego"], default=["procedural", "lego"])
    ap.add_argument("--hw-presets", nargs="+", default=["fpga_ecp5"])
    ap.add_argument("--seeds", nargs="+", type=cli.number(int, lo=0), default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=[m for m in METHODS if m != "caq"],
                    help="default: every method but caq, which is not budgeted in evaluations (one policy)")
    ap.add_argument("--episodes", type=cli.number(int, lo=1), default=20, help="DDPG's episodes")
    ap.add_argument("--evaluations", type=cli.number(int, lo=1), default=60,
                    help="policy evaluations every method gets, refinement included")
    ap.add_argument("--levelled-warmup", action="store_true",
                    help="DDPG's warm-up episodes each around one random level, not HAQ's independent actions")
    ap.add_argument("--sensitivity-obs", action="store_true",
                    help="DDPG also observes each unit's sensitivity (hero.search.env.sensitivities)")
    ap.add_argument("--held-out-rays", type=cli.number(int, lo=64), default=16384)
    ap.add_argument("--refine-passes", type=cli.number(int, lo=0), default=10)
    ap.add_argument("--qat-steps", type=cli.number(int, lo=0), default=200)
    ap.add_argument("--test-views", type=cli.number(int, lo=1), default=5)
    ap.add_argument("--lego-ckpt", type=Path, default=LEGO_CKPT)
    ap.add_argument("--procedural-ckpt", type=Path, default=PROCEDURAL_CKPT,
                    help="used when it exists; else the sweep trains the same (cpu preset, 1000 steps)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_search_methods"))
    ap.add_argument("--num-cpus", type=cli.number(int, lo=1), default=None, help="local Ray workers (default: cores)")
    ap.add_argument("--address", default=None, help="an existing Ray cluster")
    a = ap.parse_args(argv)
    if "ddpg" in a.methods and a.evaluations < a.episodes:
        ap.error(f"--evaluations {a.evaluations}: fewer than --episodes {a.episodes}")
    if "ddpg" not in a.methods:
        ap.error("--methods: the benchmark measures DDPG against the others; include ddpg")
    if "lego" in a.scenes:
        flags.checkpoint_file(ap, "--lego-ckpt", a.lego_ckpt, flags.TRAIN_LEGO)
    if "procedural" in a.scenes and a.procedural_ckpt.exists():  # else the sweep trains it
        flags.checkpoint_file(ap, "--procedural-ckpt", a.procedural_ckpt)
    flags.hardware(ap, "--hw-presets", a.hw_presets)
    flags.out_folder(ap, a.out)
    from hero.sweep.config import SweepError, load_sweep
    from hero.sweep.report import write_results
    from hero.sweep.run import run_sweep

    t0 = time.perf_counter()
    path = atomic.write(a.out / "sweep.toml", sweep_toml(a))
    try:
        sw = load_sweep(path)
    except SweepError as e:
        return cli.refuse(str(e))
    res = run_sweep(sw, address=a.address, num_cpus=a.num_cpus, log=lambda m: print(m, flush=True))
    write_results(sw.out, res["rows"], sw.path, res["seconds"])
    rows = res["rows"]
    agg = aggregate(rows, a.methods)
    per = agg["per"]
    lines = [f"search methods at {a.evaluations} evaluations (DDPG: {a.episodes} episodes + refinement), "
             f"{', '.join(a.scenes)} on {', '.join(a.hw_presets)}, seeds {' '.join(map(str, a.seeds))}; "
             f"{len(agg['cells'])} complete scene/preset/seed cells"]
    for scene in a.scenes:
        sub = aggregate([r for r in rows if r["scene"] == scene], a.methods)["per"]
        lines += [""] + table(sub, f"{scene}:")
    lines += [""] + table(per, "all scenes:")
    failed = [r for r in rows if r["status"] != "done"]
    lines += [f"failed job {r['id']}: {r.get('error', '')}" for r in failed]
    if not agg["cells"]:
        print("\n".join(lines))
        print("error: no complete cell (every method finished on a scene and seed): nothing to compare",
              flush=True)
        return 1
    best = max(a.methods, key=lambda m: statistics.mean(per[m]["score"]))
    gap = 100 * (statistics.mean(per[best]["score"]) - statistics.mean(per["ddpg"]["score"]))
    hv_best = statistics.mean(per[best]["hv"])
    hv_ratio = statistics.mean(per["ddpg"]["hv"]) / hv_best if hv_best > 0 else float("nan")
    lines += ["", f"results: {sw.out}/results.csv, summary.md; total {(time.perf_counter() - t0) / 60:.1f} min",
              f"ddpg_reward_gap_pct={gap:.2f} ddpg_hv_ratio={hv_ratio:.3f} best_method={best}"]
    text = "\n".join(lines)
    atomic.write(a.out / "bench.txt", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
