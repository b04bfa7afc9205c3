"""Seconds per training step, plain and with hard-sample mining, on the same run: the steps' own cost,
apart from how fast either variant learns (bench.hard_samples measures that).

Each variant trains the procedural scene (cpu preset, seed 0) in its own process; the mean over steps
--skip .. --steps is taken (after the occupancy warm-up), --repeats times, the variants interleaved so
that a busy machine weighs on both alike. To compare two versions of the code, run the same file with
PYTHONPATH at each checkout.
Usage: python -m bench.step_time [--steps 300] [--skip 150] [--repeats 2]
Last line: mining_step_s=<median> plain_step_s=<median> step_ratio=<mining/plain>
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.worker import run_json
from hero import cli


def worker(variant: str, steps: int, skip: int) -> dict:
    from hero.train import Trainer, default_config

    tr = Trainer(default_config(data="procedural", preset="cpu", steps=steps, seed=0, hard_mining=variant == "mining",
                                progress=False))
    times, samples = [], []
    while tr.step < steps:
        t0 = time.perf_counter()
        _, n = tr.train_step()
        if tr.step > skip:
            times.append(time.perf_counter() - t0)
            samples.append(n)
    return {"step_s": statistics.mean(times), "samples": statistics.mean(samples)}


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.step_time", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=cli.number(int, lo=2), default=300)
    ap.add_argument("--skip", type=cli.number(int, lo=0), default=150, help="steps left out at the start")
    ap.add_argument("--repeats", type=cli.number(int, lo=1), default=2)
    ap.add_argument("--variant", choices=["plain", "mining"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.skip >= a.steps:
        ap.error(f"--skip {a.skip}: must be below --steps {a.steps}")
    if a.variant:
        print(json.dumps(worker(a.variant, a.steps, a.skip)))
        return 0
    runs = {"plain": [], "mining": []}
    print(f"{'repeat':>6} {'variant':>8} {'s/step':>8} {'evaluated/step':>15}")
    for r in range(a.repeats):
        for v in runs:
            res = run_json("bench.step_time", ["--variant", v, "--steps", str(a.steps), "--skip", str(a.skip)])
            runs[v].append(res["step_s"])
            print(f"{r:>6} {v:>8} {res['step_s']:>8.4f} {res['samples']:>15.0f}", flush=True)
    m, p = statistics.median(runs["mining"]), statistics.median(runs["plain"])
    print(f"mining_step_s={m:.4f} plain_step_s={p:.4f} step_ratio={m / p:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
