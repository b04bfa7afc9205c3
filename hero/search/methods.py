"""Search methods other than DDPG, at a fixed budget of policy evaluations (docs/search.md#methods).

As in HAQ, the environment (units, budgets, the Scorer) is one and the methods are strategies that
propose bit lists to it: `random` (uniform random bit widths), `greedy` (the refinement of
hero/search/refine.py alone, from uniform 8), `tpe` and `nsga2` (Optuna's samplers), and `caq`
(the A-CAQ baseline, hero/caq: its own training learns one policy, blind to the hardware, which is
scored once; CAQ_METHOD holds its settings, those of bench.hero_vs_caq's MDL point). DDPG runs in
hero/search/run.py. Every proposal goes through `evaluate_bits`, as DDPG's episodes do: fitted to
the budgets, then scored, with the same penalty when nothing fits.

Resume: a method is deterministic for its seed, so a rerun replays it from the start, answering the
proposals the state already holds from it (no scoring), and goes on where it stopped.
"""

from __future__ import annotations

import numpy as np

from hero import checkpoint
from hero.interrupt import Interrupted, Interruptible

from .env import KIND_FIELD, QuantEnv
from .refine import refine
from .score import Scorer

METHODS = ("ddpg", "random", "greedy", "tpe", "nsga2", "caq")
#: hero.caq's settings when it runs as a method: MDL (no PSNR target to choose per scene), and the
#: budget of bench.hero_vs_caq's CAQ points.
CAQ_METHOD = {"target": "mdl", "steps": 200, "rays": 1024, "calib_batches": 10, "lam": 1e-3}
INFEASIBLE_PENALTY = 10.0


def evaluate_bits(env: QuantEnv, scorer: Scorer, fits, bits: list[int]) -> tuple[list[int], object, float, bool]:
    """A proposal fitted to the budgets (HAQ) and scored: (bits, Score, reward, feasible). A proposal that
    cannot fit even at b_min everywhere is scored at b_min with a penalty."""
    fitted = env.fit_budget(bits, fits)
    feasible = fitted is not None
    if not feasible:
        fitted = [env.b_min] * len(env.units)
    s = scorer(env.policy(fitted))
    return fitted, s, (s.reward if feasible else s.reward - INFEASIBLE_PENALTY), feasible


def record(bits: list[int], s, reward: float, feasible: bool, phase: str) -> dict:
    """One evaluation, exact (the CSV rounds)."""
    return {"phase": phase, "reward": float(reward), "psnr": float(s.psnr), "latency_ms": float(s.latency_ms),
            "size_bits": int(s.size_bits), "cost": float(s.cost), "feasible": int(feasible),
            "bits": [int(b) for b in bits]}


class Spent(Exception):
    """The budget of evaluations is used up."""


class Evaluator:
    """Scores a method's proposals, `limit` at most; replays the stored evaluations of a resumed run
    (a proposal must be the one stored), saves after each new one, and stops on Ctrl-C."""

    def __init__(self, env: QuantEnv, scorer: Scorer, fits, limit: int, stored: list[dict], save, stop,
                 bar=None, phase: str = "trial", where: str = ""):
        self.env, self.scorer, self.fits, self.limit = env, scorer, fits, limit
        self.stored, self.trace, self.save, self.stop, self.bar = stored, [], save, stop, bar
        self.phase, self.where = phase, where

    def __call__(self, bits: list[int]) -> dict:
        n = len(self.trace)
        if n >= self.limit:
            raise Spent
        bits = [int(b) for b in bits]
        if n < len(self.stored):
            rec = self.stored[n]
            if rec["proposed"] != bits:
                raise ValueError("the stored evaluations do not replay (another version of the method?): "
                                 "use another --out")
            self.trace.append(rec)
            return rec
        fitted, s, reward, feasible = evaluate_bits(self.env, self.scorer, self.fits, bits)
        rec = {**record(fitted, s, reward, feasible, self.phase), "proposed": bits}
        self.trace.append(rec)
        self.save(self.trace)
        if self.bar is not None:
            self.bar.update(1)
            best = max((r for r in self.trace if r["feasible"]), key=lambda r: r["reward"], default=None)
            if best is not None:
                self.bar.set_postfix(best_reward=f"{best['reward']:.3f}", psnr=f"{best['psnr']:.2f}",
                                     latency=f"{best['latency_ms']:.2f}ms")
        if self.stop.requested and len(self.trace) < self.limit:
            raise Interrupted(len(self.trace), self.where, unit="evaluation")
        return rec


def run_random(ev: Evaluator, env: QuantEnv, seed: int, **_) -> None:
    rng = np.random.default_rng(seed)
    while True:
        ev(list(rng.integers(env.b_min, env.b_max + 1, len(env.units))))


def run_greedy(ev: Evaluator, env: QuantEnv, fits, refine_passes: int, **_) -> None:
    start = env.fit_budget([env.b_max] * len(env.units), fits) or [env.b_min] * len(env.units)
    refine(start, env.b_min, env.b_max, lambda b: ev(b)["reward"], lambda b: fits(env.policy(b)), refine_passes)


def _param(i: int, unit) -> str:
    return f"{i:02d}.{unit.kind}.{unit.name}"


def run_optuna(ev: Evaluator, env: QuantEnv, seed: int, method: str, objective: str, **_) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if method == "tpe":
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    else:  # nsga2: PSNR up, the objective's quantity (latency, or cost) down
        pop = max(4, min(50, ev.limit // 5))
        study = optuna.create_study(directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.NSGAIISampler(population_size=pop, seed=seed))
    while True:
        trial = study.ask()
        bits = [trial.suggest_int(_param(i, u), env.b_min, env.b_max) for i, u in enumerate(env.units)]
        rec = ev(bits)
        if method == "tpe":
            study.tell(trial, rec["reward"])
        else:
            other = rec["cost"] if objective == "cost" else rec["latency_ms"]
            study.tell(trial, [rec["psnr"] - (0.0 if rec["feasible"] else INFEASIBLE_PENALTY), other])


def run_caq(ev: Evaluator, env: QuantEnv, seed: int, ckpt, folder, progress: bool = False, **_) -> None:
    """CAQ trains its soft bits on the checkpoint (in folder/caq, resumable); its policy is one evaluation."""
    from hero.caq.run import caq
    from hero.quant.policy import load_policy

    if ev.stored:  # resumed after its evaluation: CAQ's policy is in the state
        ev(ev.stored[0]["proposed"])
        return
    if ckpt is None:
        raise ValueError("the caq method needs the checkpoint it trains on")
    caq(ckpt, folder / "caq", seed=seed, test_views=1, progress=progress, **CAQ_METHOD)
    policy = load_policy(folder / "caq" / "policy.json", env.model)
    ev([getattr(policy, KIND_FIELD[u.kind])[u.name] for u in env.units])


RUNNERS = {"random": run_random, "greedy": run_greedy, "tpe": run_optuna, "nsga2": run_optuna, "caq": run_caq}


def run_method(method: str, env: QuantEnv, scorer: Scorer, fits, limit: int, seed: int, state_path,
               settings: dict, refine_passes: int, progress: bool, ckpt=None) -> list[dict]:
    """Run `method` for `limit` evaluations at most (resuming from `state_path`); its evaluations.
    `ckpt`: the checkpoint, for the methods that train on it (caq)."""
    stored = []
    if state_path.exists():
        st = checkpoint.load_run_state(state_path, "search state of a method", "config", settings)
        stored = st["trace"]

    def save(trace: list[dict]) -> None:
        checkpoint.save(state_path, {"config": settings, "trace": trace})

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=limit, initial=min(limit, len(stored)), desc=method, unit="eval", dynamic_ncols=True)
    try:
        with Interruptible() as stop:
            ev = Evaluator(env, scorer, fits, limit, stored, save, stop, bar, phase=method, where=str(state_path))
            try:
                RUNNERS[method](ev, env, seed=seed, fits=fits, refine_passes=refine_passes, method=method,
                                objective=scorer.objective, ckpt=ckpt, folder=state_path.parent)
            except Spent:
                pass
    finally:
        if bar is not None:
            bar.close()
    if len(ev.trace) > len(stored) or not state_path.exists():
        save(ev.trace)
    return ev.trace
