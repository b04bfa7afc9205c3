"""The HERO search: DDPG over per-unit bit widths, scored by PSNR and accelerator latency."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from hero import atomic, checkpoint
from hero.cli import Status
from hero.interrupt import Interrupted, Interruptible
from hero.nerf.evaluate import evaluate_views
from hero.nerf.render import camera_meta
from hero.quant.calib import calibrated_ranges, checkpoint_scenes
from hero.quant.policy import Policy
from hero.quant.qnerf import QUANTIZER, FakeQuantField, fp32_size_bits
from sim_py.backends import get_backend
from sim_py.frame import FrameModel
from sim_py.hw import load_hardware
from sim_py.report import breakdown_dict, plot
from sim_py.workload import workload_from_frame

from .agent import DDPG, LEVELLED_WARMUP_SPREAD, DDPGConfig
from .env import QuantEnv, sensitivities, units_of
from .front import HV_REF_LATENCY, HV_REF_PSNR_DB, pareto_indices, relative_hypervolume
from .methods import METHODS, evaluate_bits, record, run_method
from .refine import REFINE_METHOD, refine
from .score import Scorer, cost, cost_efficiency, held_out_rays

STATE = "search_state.pt"
#: Methods other than DDPG get this many evaluations per --episodes when no budget is given
#: (DDPG's own count, episodes plus refinement to convergence, is about that on the cpu preset).
DEFAULT_EVALUATIONS_PER_EPISODE = 3
EVAL_FIELDS = ["evaluation", "phase", "reward", "psnr", "latency_ms", "size_kib", "cost", "feasible", "bits"]
CSV_FIELDS = ["episode", "reward", "psnr", "latency_ms", "size_kib", "cost", "sigma", "feasible", "bits", "seconds"]


def model_fingerprint(model) -> str:
    """A short hash of the model's parameters: a resumed search must score the same model."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def unit_shares(frame: FrameModel, model) -> tuple[dict, dict]:
    """Each unit's share of the uniform 8-bit latency and of the 8-bit model size."""
    levels = [n for n, k, _ in model.quant_units() if k == "hash_level"]
    b = frame.query([8] * len(levels), [8] * len(frame.w.layers))
    per_batch = b.details["mlp_cycles_per_batch"]
    mlp_total = sum(per_batch.values()) or 1.0
    enc_share = b.encoding / (b.encoding + b.mlp) if b.encoding + b.mlp else 0.0
    lat = {n: (1 - enc_share) * c / mlp_total for n, c in per_batch.items()}
    lat.update({n: enc_share / len(levels) for n in levels})
    params = {n: info["params"] for n, _, info in model.quant_units()}
    total = sum(params.values())
    return lat, {n: p / total for n, p in params.items()}


def scoring_setup(ckpt: Path, hw: str = "rtl_calibrated", hw_preset: str = "fpga_ecp5", seed: int = 0,
                  latency_weight: float = 3.0, held_out: int = 16384, objective: str = "latency",
                  progress: bool = False):
    """The model, its test scene, the hardware, the frame model and the Scorer a search scores with.
    With `progress`, one status line per step (each can take seconds on a large capture)."""
    status = Status(progress)
    status(f"loading {ckpt}")
    model, meta = checkpoint.load(ckpt)
    train_scene, val_scene, test_scene = checkpoint_scenes(meta)
    status(f"calibrating activation ranges on training rays ({len(train_scene)} views)")
    ranges = calibrated_ranges(model, meta, train_scene, seed)
    hwcfg = load_hardware(hw_preset)
    status(f"preparing the frame workload: test view 0 ({test_scene.width}x{test_scene.height}) on {hwcfg.name}")
    r = meta["render"]
    wl = workload_from_frame(model, r.grid, torch.from_numpy(test_scene.c2w[0]), camera_meta(test_scene), r.dt,
                             r.max_steps, name=f"{Path(r.data).name} test view 0")
    frame = FrameModel(wl, hwcfg, get_backend(hw))
    status(f"drawing {held_out} held-out rays of the validation views ({wl.n_samples} frame samples traced)")
    scorer = Scorer(model, meta, ranges, held_out_rays(val_scene, held_out, seed), frame, latency_weight, objective)
    status("ready")
    return model, meta, test_scene, hwcfg, frame, scorer


def search(ckpt: Path, out: Path, hw: str = "rtl_calibrated", hw_preset: str = "fpga_ecp5", episodes: int = 60,
           latency_budget: float | None = None, size_budget_kib: float | None = None, seed: int = 0,
           latency_weight: float = 3.0, held_out: int = 16384, qat_steps: int = 200, test_views: int | None = 5,
           warmup: int | None = None, refine_passes: int = 10, progress: bool = True,
           objective: str = "latency", agent_seed: int | None = None, method: str = "ddpg",
           evaluations: int | None = None, levelled_warmup: bool = False, sensitivity_obs: bool = False) -> dict:
    """One search (docs/search.md). `seed` fixes the calibration, the held-out rays and, unless
    `agent_seed` is given, the agent's exploration (or the method's own randomness); searches that differ
    only in `agent_seed` score policies on the same rays (and share their PSNR memo).

    `method`: ddpg (`episodes` episodes, then refinement), or random, greedy, tpe, nsga2
    (hero/search/methods.py). `evaluations`: the policy evaluations the method gets, refinement included
    (ddpg: its refinement stops at evaluations - episodes; None: to convergence, as before); None gives
    the other methods DEFAULT_EVALUATIONS_PER_EPISODE x `episodes`. `levelled_warmup`: DDPG's warm-up
    episodes each around one random level (LEVELLED_WARMUP_SPREAD) instead of HAQ's independent
    random actions. `sensitivity_obs`: the agent also observes each unit's sensitivity
    (hero.search.env.sensitivities: its output perturbation at 4 bits, no evaluation spent)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "ddpg" and evaluations is not None and evaluations < episodes:
        raise ValueError(f"--evaluations {evaluations}: fewer than the {episodes} DDPG episodes (--episodes)")
    atomic.check_folder(out)  # created once the setup has loaded: a failed run leaves no empty --out
    t_start = time.perf_counter()
    model, meta, test_scene, hwcfg, frame, scorer = scoring_setup(ckpt, hw, hw_preset, seed, latency_weight,
                                                                  held_out, objective, progress)
    atomic.make_folder(out)
    lat_share, mem_share = unit_shares(frame, model)
    sens = sensitivities(model, scorer.ranges.samples) if sensitivity_obs else None
    env = QuantEnv(model, units_of(model, lat_share, mem_share, sens))

    def fits(policy: Policy) -> bool:
        if latency_budget is not None and scorer.latency_ms(policy) > latency_budget:
            return False
        if size_budget_kib is not None:
            return scorer.quantized(policy).size_bits()["total"] / 8192 <= size_budget_kib
        return True

    settings = {"hw": hw, "hw_preset": hw_preset, "seed": seed, "latency_weight": latency_weight,
                "held_out_rays": held_out, "latency_budget": latency_budget, "size_budget_kib": size_budget_kib,
                "model": model_fingerprint(model), "quantizer": QUANTIZER, "objective": objective}
    if agent_seed is not None:
        settings["agent_seed"] = agent_seed
    settings["method"] = method
    if sensitivity_obs:
        settings["sensitivity_obs"] = True  # absent: the observation without it, as before the option
    if method != "ddpg":
        limit = DEFAULT_EVALUATIONS_PER_EPISODE * episodes if evaluations is None else evaluations
        trace = run_method(method, env, scorer, fits, limit, seed if agent_seed is None else agent_seed,
                           out / STATE, settings, refine_passes, progress, ckpt=ckpt)
        rows = csv_rows(trace, key="episode")
        best = max((r for r in rows if r["feasible"]), key=lambda r: r["reward"], default=None)
        if best is None:
            raise ValueError("no evaluation produced a policy within the budgets; relax --latency-budget/--size-budget")
        found = env.policy([int(b) for b in best["bits"].split()])
        found.save(out / "policy.json")
        return finish(out, ckpt, model, meta, test_scene, scorer, frame, found, rows, best, qat_steps, test_views,
                      hwcfg, hw, t_start, search_info=search_info(method, trace, scorer, limit), progress=progress)

    rows, best, episode, refined = [], None, 0, None
    state_path = out / STATE
    spread = LEVELLED_WARMUP_SPREAD if levelled_warmup else None
    settings["warmup_spread"] = spread
    # states from before --objective, --method and the levelled warm-up: the latency objective, DDPG, HAQ's
    st = checkpoint.load_run_state(state_path, "search state", "config", settings,
                                   lambda c: {"objective": "latency", "method": "ddpg", "warmup_spread": None, **c}) \
        if state_path.exists() else None
    cfg = DDPGConfig(warmup=min(20, max(1, episodes // 4)) if warmup is None else warmup,
                     warmup_spread=spread)
    agent = DDPG(env.obs_dim, cfg, seed if agent_seed is None else agent_seed)

    def save_state() -> None:
        checkpoint.save(state_path, {"agent": agent.state_dict(), "rows": rows, "best": best, "episode": episode,
                                     "config": settings, "refined": refined})

    if st is not None:
        agent.load_state_dict(st["agent"])
        rows, best, episode, refined = st["rows"], st["best"], st["episode"], st.get("refined")

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, initial=episode, desc="search", unit="ep", dynamic_ncols=True)
    with Interruptible() as stop:
        while episode < episodes:
            t0 = time.perf_counter()
            obs, transitions, done = env.reset(), [], False
            while not done:
                a = agent.act(obs, episode)
                nxt, done = env.step(a)
                transitions.append((obs, a, nxt, done))
                obs = nxt
            bits, s, reward, feasible = evaluate_bits(env, scorer, fits, env.bits)
            agent.remember(transitions, reward)
            agent.update()
            row = {"episode": episode, "reward": round(reward, 4), "psnr": round(s.psnr, 3),
                   "latency_ms": round(s.latency_ms, 4), "size_kib": round(s.size_bits / 8192, 2),
                   "cost": round(s.cost, 5), "sigma": round(agent.sigma(episode), 4), "feasible": int(feasible),
                   "bits": " ".join(map(str, bits)), "seconds": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            if feasible and (best is None or reward > best["reward"]):
                best = row
            episode += 1
            write_csv(out / "episodes.csv", rows, CSV_FIELDS)
            save_state()
            if bar is not None:
                bar.update(1)
                if best:
                    bar.set_postfix(best_reward=f"{best['reward']:.3f}", psnr=f"{best['psnr']:.2f}",
                                    latency=f"{best['latency_ms']:.2f}ms")
            if stop.requested and episode < episodes:  # the state of the finished episodes is saved
                if bar is not None:
                    bar.close()
                raise Interrupted(episode, str(state_path), unit="episode")
    if bar is not None:
        bar.close()
    if best is None:
        raise ValueError("no episode produced a policy within the budgets; relax --latency-budget/--size-budget")

    ddpg_bits = [int(b) for b in best["bits"].split()]
    key = {"passes": refine_passes, "from": ddpg_bits, "method": REFINE_METHOD}
    cap = None if evaluations is None else evaluations - episodes
    if cap is not None:
        key["max_evaluations"] = cap
    if refined is None or "trace" not in refined or refined.get("max_evaluations") != cap \
            or any(refined.get(k) != v for k, v in key.items()):
        refined = {**key,
                   **refine_best(ddpg_bits, env, scorer, fits, refine_passes, progress, max_evaluations=cap)}
        save_state()
    found = env.policy(refined["bits"])
    found.save(out / "policy.json")
    trace = [{"phase": "episode", "reward": r["reward"], "psnr": r["psnr"], "latency_ms": r["latency_ms"],
              "size_bits": round(r["size_kib"] * 8192), "cost": r["cost"], "feasible": r["feasible"],
              "bits": [int(b) for b in r["bits"].split()]} for r in rows] + refined["trace"]
    return finish(out, ckpt, model, meta, test_scene, scorer, frame, found, rows, best, qat_steps, test_views,
                  hwcfg, hw, t_start, ddpg=env.policy(ddpg_bits), refined=refined,
                  search_info=search_info(method, trace, scorer, evaluations), progress=progress)


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic.write(path, buf.getvalue())


def csv_rows(trace: list[dict], key: str = "evaluation") -> list[dict]:
    """The evaluations as evaluations.csv rows (rounded as episodes.csv is), numbered under `key`."""
    return [{key: i, "phase": r["phase"], "reward": round(r["reward"], 4), "psnr": round(r["psnr"], 3),
             "latency_ms": round(r["latency_ms"], 4), "size_kib": round(r["size_bits"] / 8192, 2),
             "cost": round(r["cost"], 5), "feasible": int(r["feasible"]), "bits": " ".join(map(str, r["bits"]))}
            for i, r in enumerate(trace)]


def search_info(method: str, trace: list[dict], scorer: Scorer, budget: int | None) -> dict:
    """The method, its evaluations, best reward and Pareto set (PSNR against latency, held-out rays)."""
    feasible = [r for r in trace if r["feasible"]]
    best = max(range(len(trace)), key=lambda i: (trace[i]["feasible"], trace[i]["reward"], -i))
    pts = [(r["latency_ms"], r["psnr"]) for r in feasible]
    u8 = scorer(Policy.uniform(scorer.model, 8))
    return {"method": method, "evaluations": len(trace), "budget": budget, "best_reward": trace[best]["reward"],
            "best_evaluation": best, "best_psnr": trace[best]["psnr"], "best_latency_ms": trace[best]["latency_ms"],
            "reward_uniform8": u8.reward, "psnr_fp32_heldout": scorer.psnr_fp32,
            "latency_uniform8_ms": scorer.latency8_ms,
            "hypervolume": relative_hypervolume(pts, scorer.latency8_ms, scorer.psnr_fp32),
            "hypervolume_ref": [HV_REF_LATENCY, HV_REF_PSNR_DB],
            "pareto": [{"psnr": feasible[i]["psnr"], "latency_ms": feasible[i]["latency_ms"],
                        "size_kib": feasible[i]["size_bits"] / 8192, "reward": feasible[i]["reward"],
                        "bits": " ".join(map(str, feasible[i]["bits"]))} for i in pareto_indices(pts)],
            "rewards": [r["reward"] for r in trace], "trace": trace}


def refine_best(bits: list[int], env: QuantEnv, scorer: Scorer, fits, passes: int, progress: bool,
                max_evaluations: int | None = None) -> dict:
    """Greedy one-bit refinement of the agent's best policy (hero/search/refine.py), at most
    `max_evaluations` evaluations (None: no cap); "trace" holds every evaluation it made."""
    bar = None
    if progress and passes > 0:
        from tqdm import tqdm

        bar = tqdm(desc="refine", unit="eval", dynamic_ncols=True)
    before = scorer(env.policy(bits)).reward
    seen = {"evaluations": 0, "best": before}
    trace = []

    def on_eval(cand, r):
        seen["evaluations"] += 1
        seen["best"] = max(seen["best"], r)
        s = scorer(env.policy(cand))  # cached: the reward's own evaluation
        trace.append(record(cand, s, r, True, "refine"))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best_reward=f"{seen['best']:.3f}", psnr=f"{s.psnr:.2f}", latency=f"{s.latency_ms:.2f}ms")

    out = refine(bits, env.b_min, env.b_max, lambda b: scorer(env.policy(b)).reward, lambda b: fits(env.policy(b)),
                 passes, on_eval, max_evaluations=max_evaluations)
    if bar is not None:
        bar.close()
    return {"bits": out, "evaluations": seen["evaluations"], "reward_before": before, "reward_after": seen["best"],
            "trace": trace}


def finish(out, ckpt, model, meta, test_scene, scorer, frame, found, rows, best, qat_steps, test_views, hwcfg, hw,
           t_start, ddpg: Policy | None = None, refined: dict | None = None, search_info: dict | None = None,
           progress: bool = False) -> dict:
    """Final QAT of the found policy; summary, evaluations.csv, Pareto plot, latency breakdown and
    side-by-side image. `rows`: DDPG's episodes, or another method's evaluations. With `progress`: a
    status line per phase, a bar per test-view render and the QAT's own bar."""
    from hero.qat import STATE as QAT_STATE
    from hero.qat import qat

    grid, dt, steps, bg = meta["render"].render_args()
    fp32_bits = fp32_size_bits(model)
    summary = {"hardware": hwcfg.name, "backend": hw, "objective": scorer.objective,
               "latency_weight": scorer.latency_weight, "episodes": len(rows), "best_episode": best["episode"]}
    configs = {"fp32": None, "uniform8": Policy.uniform(model, 8), "uniform4": Policy.uniform(model, 4),
               "found_ddpg": ddpg or found, "found": found}
    status = Status(progress)
    status(f"summary: {test_views or len(test_scene)} test views of each of " + ", ".join(configs))
    results, first_image = {}, {}
    for name, pol in configs.items():
        same = next((k for k in results if pol is not None and configs[k] == pol), None)
        if same is not None:  # DDPG's policy when refinement kept it: the same renders
            results[name], first_image[name] = dict(results[same]), first_image[same]
            continue
        label = name if progress else None
        if pol is None:
            ev = evaluate_views(model, grid, test_scene, dt, steps, bg, test_views, progress=label)
            lat, size = scorer.latency_ms(Policy.uniform(model, 8)), fp32_bits  # FP32 is timed at 8 bits
        else:
            qn = scorer.quantized(pol)
            ev = evaluate_views(FakeQuantField(qn), grid, test_scene, dt, steps, bg, test_views, progress=label)
            lat, size = scorer.latency_ms(pol), qn.size_bits()["total"]
        first_image[name] = ev["first_image"]
        results[name] = {"psnr": ev["psnr"], "ssim": ev["ssim"], "latency_ms": lat, "size_kib": size / 8192,
                         "cost": cost(lat, size), "cost_efficiency": cost_efficiency(lat, size)}
    qat_dir = out / "qat"
    if (qat_dir / QAT_STATE).exists() and checkpoint.load_state(qat_dir / QAT_STATE).get("key", {}).get("policy") \
            != found.to_dict():  # the QAT of a policy this search found before it resumed with more evaluations
        shutil.rmtree(qat_dir)
    status(f"final QAT of the found policy: {qat_steps} steps")
    qres = qat(ckpt, found, qat_dir, steps=qat_steps, test_views=test_views, progress=progress)
    results["found_qat"] = {**results["found"], "psnr": qres["psnr"], "ssim": qres["ssim"]}
    summary["results"] = results
    summary["policy"] = found.to_dict()
    summary["refinement"] = {k: v for k, v in (refined or {}).items() if k not in ("bits", "from", "trace")}
    if search_info is not None:
        summary["search"] = {k: v for k, v in search_info.items() if k != "trace"}
        summary["method"] = search_info["method"]
        write_csv(out / "evaluations.csv", csv_rows(search_info["trace"]), EVAL_FIELDS)
    summary["test_views"] = test_views
    summary["minutes"] = (time.perf_counter() - t_start) / 60
    atomic.write_json(out / "summary.json", summary)

    status("plots: Pareto front, latency breakdown, side-by-side renders")
    refs = {name: scorer(pol) for name, pol in configs.items() if pol is not None}
    method = summary.get("method", "ddpg")
    pareto_plot(rows, refs, out / "pareto.png", unit="episode" if method == "ddpg" else "evaluation",
                method=method)
    lev = scorer.level_names
    lay = scorer.layer_names
    bd = {name: frame.query([p.tables[n] for n in lev], [p.weights[n] for n in lay])
          for name, p in (("uniform8", configs["uniform8"]), ("uniform4", configs["uniform4"]), ("found", found))}
    atomic.write_json(out / "latency_breakdown.json", {k: breakdown_dict(v) for k, v in bd.items()})
    plot(bd, f"{frame.w.name}: latency on {hwcfg.name} ({hw})", out / "latency_breakdown.png")
    side_by_side(first_image["fp32"], first_image["found"], test_scene, out / "side_by_side.png")
    return summary


def pareto_plot(rows: list[dict], refs: dict, path: Path, unit: str = "episode", method: str = "ddpg") -> None:
    """PSNR on the held-out rays (what the search optimizes) against latency, every episode (or evaluation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = np.array([r["latency_ms"] for r in rows])
    psnr = np.array([r["psnr"] for r in rows])
    ep = np.array([r["episode"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, 5))
    sc = ax.scatter(lat, psnr, c=ep, cmap="viridis", s=18, label=f"{unit}s (held-out rays)")
    fig.colorbar(sc, ax=ax, label=unit)
    front = pareto_indices(list(zip(lat.tolist(), psnr.tolist(), strict=True)))
    ax.plot(lat[front], psnr[front], "k--", lw=1, label="Pareto front")
    marks = (("uniform8", "s"), ("uniform4", "^"), ("found_ddpg", "P"), ("found", "*"))
    for name, marker in marks if method == "ddpg" else (m for m in marks if m[0] != "found_ddpg"):
        r = refs[name]
        label = {"found_ddpg": "found by DDPG", "found": "found, refined" if method == "ddpg"
                 else f"found ({method})"}.get(name, name)
        ax.scatter([r.latency_ms], [r.psnr], marker=marker, s=140, edgecolor="black", label=label, zorder=3)
    ax.set_title(f"search method: {method}", fontsize=9)
    ax.set_xlabel("frame latency on the accelerator (ms)")
    ax.set_ylabel("PSNR on held-out rays, post-training quantization (dB)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic.save_figure(path, fig, dpi=120)
    plt.close(fig)


def side_by_side(fp32, found, scene, path: Path) -> None:
    """Test view 0: ground truth, the FP32 render, the found policy's render, 4x their difference."""
    from PIL import Image

    gt = scene.images[0].astype(np.float32) / 255.0
    row = np.concatenate([gt, fp32, found, np.abs(found - fp32) * 4], axis=1)
    atomic.save_image(path, Image.fromarray((np.clip(row, 0, 1) * 255 + 0.5).astype(np.uint8)))
