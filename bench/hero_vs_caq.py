"""HERO against CAQ: the same model, the same accelerator, the same quality (docs/caq.md).

    python -m bench.hero_vs_caq [--scenes procedural lego] [--presets fpga_ecp5 edge_asic]

For each scene, a checkpoint trained by the project (procedural: trained here if missing; lego:
`python -m bench.train_lego`):
- CAQ's front (`hero.caq`): MDL, and MGL at three PSNR targets below the float model's training
  PSNR. CAQ is blind to the hardware, so one front per scene serves every preset.
- HERO's front (`hero.search`, rtl_calibrated) per preset and objective (latency, cost): one search
  per latency weight.
- The uniform policies (b = 4, 5, 6, 8 bits everywhere).
Every policy is scored the same way: the project's hardware quantizer plus the same QAT budget
(`--qat-steps`, `--qat-rays`, `--qat-lr`), PSNR on the first `--views` test views; latency from the
calibrated cycle model on the preset; size and cost as docs/search.md defines them. CAQ's own PSNR
(its fake-quantized model after its own training) is reported beside.

At equal PSNR, per scene and preset: the latency ratio (CAQ / HERO), the cost-efficiency ratio
(HERO's / CAQ's = cost_CAQ / cost_HERO) and the size ratio (HERO / CAQ), read with each method's
front interpolated at the other's points, and against the cheapest point of no lower PSNR.
Writes per scene and preset a PNG (PSNR against latency), summary.md and results.json in --out.
Last line (medians over scenes and presets; latency from the latency objective, cost efficiency
and size from the cost objective):
latency_ratio=<r> cost_eff_ratio=<c> size_ratio=<s> psnr_delta_db=<d> scenes=<n>
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from bench import flags, fronts
from hero import atomic, checkpoint, cli
from hero.nerf.render import camera_meta
from hero.quant.calib import checkpoint_scenes
from hero.quant.policy import Policy, load_policy
from hero.search.score import cost, cost_efficiency
from sim_py.backends import get_backend
from sim_py.frame import FrameModel
from sim_py.hw import load_hardware
from sim_py.workload import workload_from_frame

ROOT = Path(__file__).resolve().parents[1]
LEGO_CKPT = ROOT / "runs" / "bench_lego" / "checkpoint.pt"
PROCEDURAL_CKPT = ROOT / "runs" / "bench_procedural" / "checkpoint.pt"
PROCEDURAL_STEPS = 1000  # training steps of the procedural checkpoint (a step count: reproducible under load)
UNIFORM_BITS = (4, 5, 6, 8)
OBJECTIVES = ("latency", "cost")


def _qat_version() -> str:
    """A hash of hero.qat's source: a cached score is reused only under the same fine-tuning code."""
    import inspect

    import hero.qat

    return hashlib.sha1(inspect.getsource(hero.qat).encode()).hexdigest()[:12]


QAT_VERSION = _qat_version()


def log(msg: str, t0: float) -> None:
    print(f"[{(time.perf_counter() - t0) / 60:6.1f} min] {msg}", flush=True)


def scene_checkpoint(scene: str, a) -> Path:
    if scene == "lego":  # checked in main
        return a.lego_ckpt
    if not a.procedural_ckpt.is_file():
        from hero.train import default_config, train

        train(default_config(data="procedural", preset="cpu", out=str(a.procedural_ckpt.parent),
                             steps=PROCEDURAL_STEPS, test_views=5, progress=not a.no_progress))
    return a.procedural_ckpt


def policy_key(policy: Policy, extra: dict) -> str:
    return hashlib.sha1(json.dumps([policy.to_dict(), extra], sort_keys=True).encode()).hexdigest()[:12]


class SceneScoring:
    """One scene: its checkpoint, a frame model per preset, and the QAT score of any policy (cached)."""

    def __init__(self, name: str, ckpt: Path, presets: list[str], a, out: Path):
        self.name, self.ckpt, self.a, self.out = name, ckpt, a, out
        self.model, meta = checkpoint.load(ckpt)
        _, _, test = checkpoint_scenes(meta)
        wl = workload_from_frame(self.model, meta["render"].grid, torch.from_numpy(test.c2w[0]), camera_meta(test),
                                 meta["render"].dt, meta["render"].max_steps, name=f"{name} test view 0")
        self.frames = {p: FrameModel(wl, load_hardware(p), get_backend("rtl_calibrated")) for p in presets}
        self.levels = [n for n, k, _ in self.model.quant_units() if k == "hash_level"]
        self.layers = [n for n, k, _ in self.model.quant_units() if k == "linear"]

    def latency_ms(self, policy: Policy, preset: str) -> float:
        return self.frames[preset].query([policy.tables[n] for n in self.levels],
                                         [policy.weights[n] for n in self.layers]).ms

    def score(self, policy: Policy) -> dict:
        """Test-view PSNR after the common QAT budget, and the hardware model's size."""
        from hero.qat import qat

        a = self.a
        budget = {"steps": a.qat_steps, "rays": a.qat_rays, "lr": a.qat_lr, "views": a.views}
        out = self.out / "qat" / policy_key(policy, {**budget, "qat": QAT_VERSION})
        done = out / "score.json"
        if done.is_file():
            return json.loads(done.read_text())
        res = qat(self.ckpt, policy, out, steps=a.qat_steps, rays=a.qat_rays, lr=a.qat_lr, test_views=a.views,
                  progress=False)
        r = {"psnr": res["psnr"], "ssim": res["ssim"], "size_bits": res["size_bits"]["total"],
             "best_step": res.get("best_step"), "budget": budget}
        atomic.write_json(done, r)
        return r


def caq_settings(a, train_psnr: float) -> list[dict]:
    """MDL, and MGL at --caq-offsets dB below the float model's training PSNR."""
    pts = [{"tag": "mdl", "target": "mdl", "psnr_target": 30.0}]
    for off in a.caq_offsets:
        t = round(train_psnr - off, 1)
        pts.append({"tag": f"mgl{t:g}", "target": "mgl", "psnr_target": t})
    return pts


def run_caq(sc: SceneScoring, a, t0: float) -> list[dict]:
    from hero.caq import caq
    from hero.caq.run import float_loss, loss_to_psnr

    model, meta = checkpoint.load(sc.ckpt)
    train, _, _ = checkpoint_scenes(meta)
    r = meta["render"]
    train_psnr = loss_to_psnr(float_loss(model, r.grid, train, r.dt, r.max_steps, r.background, a.caq_rays, 0))
    points = []
    for s in caq_settings(a, train_psnr):
        out = sc.out / "caq" / f"{s['tag']}_lam{a.caq_lambda:g}_s{a.caq_steps}_r{a.caq_rays}"
        log(f"{sc.name}: CAQ {s['tag']} (float model's training PSNR {train_psnr:.2f} dB)", t0)
        res = (json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else
               caq(sc.ckpt, out, target=s["target"], psnr_target=s["psnr_target"], lam=a.caq_lambda,
                   steps=a.caq_steps, rays=a.caq_rays, calib_batches=a.caq_calib, test_views=a.views,
                   progress=not a.no_progress))
        pol = load_policy(out / "policy.json", sc.model)
        points.append({"method": "CAQ", "setting": s["tag"], "policy": pol, "own_psnr": res["psnr"],
                       "own_mean_bits": res["mean_bits"], "own_size_kib": res["size_kib"], "bitops_t": res["bitops_t"]})
    return points


def run_hero(sc: SceneScoring, preset: str, objective: str, a, t0: float) -> list[dict]:
    from hero.search.run import search

    points = []
    for i, w in enumerate(a.weights):
        # each weight explores on its own: the same warm-up for every weight gave one policy for all
        agent_seed = 1 + i
        out = (sc.out / "hero" / preset / objective /
               f"w{w:g}_e{a.episodes}_r{a.held_out_rays}_p{a.refine_passes}_a{agent_seed}")
        log(f"{sc.name} / {preset}: HERO search, objective {objective}, weight {w:g}", t0)
        if not (out / "summary.json").is_file():
            search(sc.ckpt, out, hw="rtl_calibrated", hw_preset=preset, episodes=a.episodes, latency_weight=w,
                   held_out=a.held_out_rays, qat_steps=0, test_views=1, refine_passes=a.refine_passes,
                   objective=objective, progress=not a.no_progress, agent_seed=agent_seed)
        points.append({"method": f"HERO ({objective})", "setting": f"w={w:g}",
                       "policy": load_policy(out / "policy.json", sc.model)})
    return points


def compare(caq_pts: list[dict], hero_pts: list[dict]) -> dict:
    """Ratios at equal PSNR: latency and cost (CAQ / HERO), size (HERO / CAQ)."""
    out = {}
    for metric in ("latency_ms", "cost", "size_bits"):
        c = [(p["psnr"], p[metric]) for p in caq_pts]
        h = [(p["psnr"], p[metric]) for p in hero_pts]
        interp, nearest = fronts.ratio_interpolated(c, h), fronts.ratio_nearest(c, h)
        if metric == "size_bits":  # HERO / CAQ: below 1 means HERO's models are smaller
            interp, nearest = [1 / x for x in interp], [(1 / r, d) for r, d in nearest]
        out[metric] = {"interpolated": fronts.median(interp), "nearest": fronts.median([r for r, _ in nearest]),
                       "psnr_delta_db": fronts.median([d for _, d in nearest]), "n_interpolated": len(interp),
                       "n_nearest": len(nearest)}
    return out


def plot(path: Path, title: str, groups: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"CAQ": ("tab:red", "o"), "HERO (latency)": ("tab:blue", "*"), "HERO (cost)": ("tab:green", "P"),
             "uniform": ("tab:gray", "s")}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name, pts in groups.items():
        if not pts:
            continue
        color, marker = style[name]
        xs, ys = [p["latency_ms"] for p in pts], [p["psnr"] for p in pts]
        ax.scatter(xs, ys, c=color, marker=marker, s=90 if marker == "*" else 50, label=name, zorder=3,
                   edgecolor="black", linewidth=0.5)
        f = fronts.front(list(zip(ys, xs, strict=True)))
        ax.plot([v for _, v in f], [p for p, _ in f], color=color, lw=1, ls="--" if name == "uniform" else "-")
        for p in pts:
            ax.annotate(p["setting"], (p["latency_ms"], p["psnr"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        if name == "CAQ":
            ax.scatter(xs, [p["own_psnr"] for p in pts], facecolors="none", edgecolors=color, marker="o", s=50,
                       label="CAQ, its own fake-quant PSNR", zorder=2)
    ax.set_xlabel("frame latency (ms, rtl_calibrated cycle model)")
    ax.set_ylabel("test PSNR after the common QAT (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.hero_vs_caq", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", nargs="+", choices=("procedural", "lego"), default=["procedural", "lego"])
    ap.add_argument("--presets", nargs="+", default=["fpga_ecp5", "edge_asic"])
    ap.add_argument("--lego-ckpt", type=Path, default=LEGO_CKPT)
    ap.add_argument("--procedural-ckpt", type=Path, default=PROCEDURAL_CKPT,
                    help=f"trained here if missing (cpu preset, {PROCEDURAL_STEPS} steps)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_hero_vs_caq"))
    ap.add_argument("--views", type=cli.number(int, lo=1), default=3, help="test views that score every policy")
    ap.add_argument("--qat-steps", type=cli.number(int, lo=0), default=100, help="the common QAT budget: steps")
    ap.add_argument("--qat-rays", type=cli.number(int, lo=1), default=1024,
                    help="the common QAT budget: rays per step")
    ap.add_argument("--qat-lr", type=cli.number(float, lo=0), default=None,
                    help="the common QAT budget: learning rate (default: hero.qat's)")
    ap.add_argument("--caq-offsets", type=cli.number(float, lo=0), nargs="+", default=[1.0, 2.5, 4.0],
                    help="MGL targets, dB below the float model's training PSNR")
    ap.add_argument("--caq-lambda", type=cli.number(float, lo=0), default=1e-3)
    ap.add_argument("--caq-steps", type=cli.number(int, lo=1), default=200)
    ap.add_argument("--caq-rays", type=cli.number(int, lo=1), default=1024)
    ap.add_argument("--caq-calib", type=cli.number(int, lo=1), default=10, help="CAQ's calibration batches")
    ap.add_argument("--weights", type=cli.number(float, lo=0, lo_open=True), nargs="+", default=[1.0, 2.0, 4.0, 8.0],
                    help="HERO's latency weights, one search each")
    ap.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES),
                    help="HERO's objectives (each gets its front)")
    ap.add_argument("--episodes", type=cli.number(int, lo=1), default=20)
    ap.add_argument("--held-out-rays", type=cli.number(int, lo=64), default=2048)
    ap.add_argument("--refine-passes", type=cli.number(int, lo=0), default=2)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    flags.hardware(ap, "--presets", a.presets)
    if "lego" in a.scenes:
        flags.checkpoint_file(ap, "--lego-ckpt", a.lego_ckpt, flags.TRAIN_LEGO)
    if "procedural" in a.scenes and a.procedural_ckpt.exists():  # else trained here
        flags.checkpoint_file(ap, "--procedural-ckpt", a.procedural_ckpt)
    flags.out_folder(ap, a.out)
    if a.qat_lr is None:
        import inspect

        from hero.qat import qat

        a.qat_lr = inspect.signature(qat).parameters["lr"].default
    t0 = time.perf_counter()
    results, md, pair_ratios = {}, [], []
    for scene in a.scenes:
        try:
            sc = SceneScoring(scene, scene_checkpoint(scene, a), a.presets, a, a.out / scene)
        except cli.BadInput as e:  # the checkpoint's scene is not there
            return cli.refuse(str(e))
        caq_pts = run_caq(sc, a, t0)
        uni = [{"method": "uniform", "setting": f"u{b}", "policy": Policy.uniform(sc.model, b, act_bits=b)}
               for b in UNIFORM_BITS]
        hero = {(p, o): run_hero(sc, p, o, a, t0) if o in a.objectives else [] for p in a.presets for o in OBJECTIVES}
        everything = caq_pts + uni + [x for pts in hero.values() for x in pts]
        for i, pt in enumerate(everything):
            log(f"{scene}: QAT and test views, {pt['method']} {pt['setting']} ({i + 1}/{len(everything)})", t0)
            pt.update(sc.score(pt["policy"]))
        for preset in a.presets:
            def timed(pts, preset=preset, sc=sc):
                out = []
                for p in pts:
                    lat = sc.latency_ms(p["policy"], preset)
                    out.append({**p, "latency_ms": lat, "cost": cost(lat, p["size_bits"]),
                                "cost_efficiency": cost_efficiency(lat, p["size_bits"])})
                return out
            c, u = timed(caq_pts), timed(uni)
            hl, hc = timed(hero[(preset, "latency")]), timed(hero[(preset, "cost")])
            cmp = {"latency": compare(c, hl), "cost": compare(c, hc)}
            pair_ratios.append(cmp)
            title = f"{scene} on {preset}: HERO against CAQ (QAT {a.qat_steps} steps, {a.views} test views)"
            png = a.out / f"{scene}_{preset}.png"
            plot(png, title, {"CAQ": c, "HERO (latency)": hl, "HERO (cost)": hc, "uniform": u})
            results[f"{scene}/{preset}"] = {"comparison": cmp, "points": [
                {k: (v.to_dict() if isinstance(v, Policy) else v) for k, v in p.items()} for p in c + u + hl + hc]}
            md.append(table_md(scene, preset, c + u + hl + hc, cmp, png.name))
    minutes = (time.perf_counter() - t0) / 60
    a.out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(a.out / "results.json", {"settings": {k: (str(v) if isinstance(v, Path) else v)
                                                            for k, v in vars(a).items()},
                                               "results": results, "minutes": minutes})
    atomic.write(a.out / "summary.md", "\n".join(md) + f"\n({minutes:.1f} min)\n")
    print("\n" + "\n".join(md))
    lat = fronts.median([r["latency"]["latency_ms"]["interpolated"] for r in pair_ratios])
    ce = fronts.median([r["cost"]["cost"]["interpolated"] for r in pair_ratios])
    size = fronts.median([r["cost"]["size_bits"]["interpolated"] for r in pair_ratios])
    delta = fronts.median([r["latency"]["latency_ms"]["psnr_delta_db"] for r in pair_ratios])
    print(f"({minutes:.1f} min; tables in {a.out / 'summary.md'}, plots {a.out}/<scene>_<preset>.png)")
    print(f"latency_ratio={lat:.3f} cost_eff_ratio={ce:.3f} size_ratio={size:.3f} psnr_delta_db={delta:.3f} "
          f"scenes={len(a.scenes)}")
    return 0


def table_md(scene: str, preset: str, pts: list[dict], cmp: dict, png: str) -> str:
    lines = [f"### {scene} on {preset}", "", f"![{scene} on {preset}]({png})", "",
             "| method | setting | PSNR dB (QAT) | own PSNR dB | latency ms | size KiB | cost ms*MiB | fps/MiB | "
             "weights | tables |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in pts:
        pol = p["policy"]
        w = " ".join(str(pol.weights[n]) for n in pol.weights)
        tb = sorted(set(pol.tables.values()))
        own = f"{p['own_psnr']:.2f}" if "own_psnr" in p else ""
        lines.append(f"| {p['method']} | {p['setting']} | {p['psnr']:.2f} | {own} | {p['latency_ms']:.1f} | "
                     f"{p['size_bits'] / 8192:.1f} | {p['cost']:.3f} | {p['cost_efficiency']:.3f} | {w} | "
                     f"{tb[0]}..{tb[-1]} |")
    lines += ["", "| HERO objective | latency ratio (interp. / nearest) | cost-eff. ratio | size ratio (HERO/CAQ) | "
              "PSNR gained at nearest (dB) |", "|---|---|---|---|---|"]
    for obj, r in cmp.items():
        lines.append(f"| {obj} | {r['latency_ms']['interpolated']:.3f} / {r['latency_ms']['nearest']:.3f} | "
                     f"{r['cost']['interpolated']:.3f} / {r['cost']['nearest']:.3f} | "
                     f"{r['size_bits']['interpolated']:.3f} / {r['size_bits']['nearest']:.3f} | "
                     f"{r['latency_ms']['psnr_delta_db']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
