"""A sweep's results: results.csv (a row per job), summary.md (a table per scene and preset) and a PNG per
scene and preset with every method's PSNR-latency front."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from hero import atomic
from hero.search.front import pareto_indices

FIELDS = ["id", "scene", "hardware", "seed", "method", "status", "best_reward", "reward_uniform8", "evaluations",
          "evals_to_99", "hypervolume", "pareto_size", "heldout_psnr", "test_psnr", "qat_psnr", "fp32_test_psnr",
          "latency_ms", "size_kib", "cost", "minutes", "error", "folder"]
REACH = 0.99  # evals_to_99: evaluations to reach this share of the best reward's gain over uniform 8-bit


def reach_threshold(best_reward: float, reward_uniform8: float, share: float = REACH) -> float:
    """The reward at `share` of the way from uniform 8-bit's reward to `best_reward` (rewards may be negative)."""
    return reward_uniform8 + share * (best_reward - reward_uniform8)


def evals_to_reach(rewards: list[float], threshold: float) -> int | None:
    """Evaluations until the first reward >= threshold (None: never)."""
    for i, r in enumerate(rewards):
        if r >= threshold - 1e-9:
            return i + 1
    return None


def cells(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Finished jobs grouped by (scene, hardware, seed): the ones scored on the same rays."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "done":
            out.setdefault((r["scene"], r["hardware"], r["seed"]), []).append(r)
    return out


def add_evals_to_99(rows: list[dict]) -> None:
    """Each finished job's evaluations to reach 99% of the best reward any method found in its cell."""
    for group in cells(rows).values():
        best = max(r["best_reward"] for r in group)
        for r in group:
            r["evals_to_99"] = evals_to_reach(r["rewards"], reach_threshold(best, r["reward_uniform8"]))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_results(out: Path, rows: list[dict], sweep_path, seconds: float) -> None:
    add_evals_to_99(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in FIELDS})
    atomic.write(out / "results.csv", buf.getvalue())
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["scene"], r["hardware"]), []).append(r)
    done = sum(r["status"] == "done" for r in rows)
    lines = [f"# Sweep {sweep_path}", "",
             f"{len(rows)} jobs: {done} done, {len(rows) - done} failed; this run's wall time {seconds / 60:.1f} min; "
             f"the finished jobs' own time {sum(r.get('minutes', 0.0) for r in rows if r['status'] == 'done'):.1f} "
             "min (one worker each).",
             "Rewards, PSNR and latency on each search's held-out rays; test PSNR on the test views after "
             "post-training quantization, QAT PSNR after the final QAT. Means over seeds (min..max); "
             f"evals to 99%: median evaluations to reach {REACH:.0%} of the best reward's gain over uniform 8-bit "
             "that any method found on the same scene, preset and seed.", ""]
    for (scene, hw), group in groups.items():
        png = f"front_{scene}_{hw}.png"
        front_plot(out / png, f"{scene} on {hw}", group)
        lines += [f"## {scene} on {hw}", "", f"![fronts]({png})", "",
                  "| method | jobs | best reward | hypervolume | evals to 99% | evaluations | held-out PSNR dB "
                  "| latency ms | test PSNR dB | QAT PSNR dB | minutes |", "|---" * 11 + "|"]
        by_method: dict[str, list[dict]] = {}
        for r in group:
            by_method.setdefault(r["method"], []).append(r)
        for m, rs in by_method.items():
            ok = [r for r in rs if r["status"] == "done"]
            if not ok:
                lines.append(f"| {m} | 0/{len(rs)} |" + " |" * 9)
                continue

            def span(k, fmt="{:.3f}", ok=ok):
                xs = [r[k] for r in ok]
                m_ = statistics.mean(xs)
                return fmt.format(m_) + (f" ({fmt.format(min(xs))}..{fmt.format(max(xs))})" if len(xs) > 1 else "")

            reach = [r["evals_to_99"] for r in ok if r.get("evals_to_99") is not None]
            lines.append(f"| {m} | {len(ok)}/{len(rs)} | {span('best_reward', '{:.4f}')} | {span('hypervolume')} | "
                         f"{f'{statistics.median(reach):g}' if reach else 'never'} | {span('evaluations', '{:.0f}')} | "
                         f"{span('heldout_psnr', '{:.2f}')} | {span('latency_ms', '{:.1f}')} | "
                         f"{span('test_psnr', '{:.2f}')} | {span('qat_psnr', '{:.2f}')} | "
                         f"{span('minutes', '{:.1f}')} |")
        lines.append("")
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        lines += ["## Failed jobs", ""] + [f"- `{r['id']}`: {r.get('error', '')}" for r in failed] + [""]
    atomic.write(out / "summary.md", "\n".join(lines))


def front_plot(path: Path, title: str, group: list[dict]) -> None:
    """Every method's Pareto front over all its evaluations of every seed, and each job's found policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    methods = list(dict.fromkeys(r["method"] for r in group))
    drawn = False
    for k, m in enumerate(methods):
        ok = [r for r in group if r["method"] == m and r["status"] == "done"]
        pts = [(p["latency_ms"], p["psnr"]) for r in ok for p in r["pareto"]]
        if not pts:
            continue
        front = [pts[i] for i in pareto_indices(pts)]
        drawn = True
        color = f"C{k}"
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color=color, lw=1.5,
                label=f"{m} ({len(ok)} seeds)")
        ax.scatter([x for x, _ in front], [y for _, y in front], color=color, s=14)
        ax.scatter([r["latency_ms"] for r in ok], [r["heldout_psnr"] for r in ok], color=color, marker="*", s=120,
                   edgecolor="black", zorder=3)
    ax.set_title(f"{title}: each method's front (held-out rays, all seeds); stars: found policies", fontsize=9)
    ax.set_xlabel("frame latency on the accelerator (ms)")
    ax.set_ylabel("PSNR on held-out rays, post-training quantization (dB)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic.save_figure(path, fig, dpi=120)
    plt.close(fig)
