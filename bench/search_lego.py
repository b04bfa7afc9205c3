"""The HERO search on lego against uniform quantization, over 3 seeds.

    python -m bench.search_lego [--ckpt runs/bench_lego/checkpoint.pt] [--episodes 60] [--hw-preset fpga_ecp5]

For each seed, `hero.search` (backend rtl_calibrated) finds a policy; it is compared with the best
uniform policy (tables, weights and activations all at b bits, b = 2..8) whose PSNR is equal or
higher. PSNR is post-training (fake-quant path) on the first `--views` test views, for the found
and the uniform policies alike; latency is the calibrated cycle model's frame latency of test
view 0. Last line (medians over the seeds):
latency_ratio=<r> psnr_delta_db=<d> size_ratio=<s> seeds=3
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch

from bench import flags
from hero import checkpoint, cli
from hero.nerf.evaluate import evaluate_views
from hero.nerf.render import camera_meta
from hero.quant.calib import calibrated_ranges, checkpoint_scenes
from hero.quant.policy import Policy, load_policy
from hero.quant.qnerf import FakeQuantField, QuantizedNeRF
from hero.search.run import search
from sim_py.backends import get_backend
from sim_py.frame import FrameModel
from sim_py.workload import workload_from_frame

DEFAULT_CKPT = Path("runs/bench_lego/checkpoint.pt")


def uniform_latency_at(front: list[tuple[float, float]], psnr: float) -> float:
    """Latency of the uniform front (sorted (PSNR, latency) points) at `psnr`, linear between
    neighbours; the last point's latency above the front."""
    for (p0, l0), (p1, l1) in itertools.pairwise(front):
        if p0 <= psnr <= p1:
            return l0 + (psnr - p0) / max(p1 - p0, 1e-12) * (l1 - l0)
    return front[-1][1] if psnr > front[-1][0] else front[0][1]


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.search_lego", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--episodes", type=cli.number(int, lo=1), default=60)
    ap.add_argument("--hw-preset", default="fpga_ecp5", help="hardware preset name or TOML file (fpga_ecp5)")
    ap.add_argument("--views", type=cli.number(int, lo=1), default=5)
    ap.add_argument("--seeds", type=cli.number(int, lo=0), nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_search_lego"))
    a = ap.parse_args(argv)
    flags.checkpoint_file(ap, "--ckpt", a.ckpt, flags.TRAIN_LEGO)
    [hw] = flags.hardware(ap, "--hw-preset", [a.hw_preset])
    flags.out_folder(ap, a.out)
    t0 = time.perf_counter()
    try:
        model, meta = checkpoint.load(a.ckpt)
        train, _, test = checkpoint_scenes(meta)
    except cli.BadInput as e:  # the checkpoint's scene is not there
        return cli.refuse(str(e))
    grid, dt, steps, bg = meta["render"].render_args()

    found = {}
    for seed in a.seeds:
        out = a.out / f"seed{seed}"
        search(a.ckpt, out, hw="rtl_calibrated", hw_preset=a.hw_preset, episodes=a.episodes, seed=seed,
               qat_steps=0, test_views=1, progress=True)
        found[seed] = load_policy(out / "policy.json", model)
    # Re-score everything on the same test views, with the same calibration and cycle model.
    ranges = calibrated_ranges(model, meta, train)
    wl = workload_from_frame(model, grid, torch.from_numpy(test.c2w[0]), camera_meta(test), dt, steps)
    frame = FrameModel(wl, hw, get_backend("rtl_calibrated"))
    levels = [n for n, k, _ in model.quant_units() if k == "hash_level"]
    layers = [n for n, k, _ in model.quant_units() if k == "linear"]

    def score(policy: Policy) -> dict:
        qn = QuantizedNeRF(model, policy, ranges)
        ev = evaluate_views(FakeQuantField(qn), grid, test, dt, steps, bg, a.views)
        lat = frame.query([policy.tables[n] for n in levels], [policy.weights[n] for n in layers]).ms
        return {"psnr": ev["psnr"], "latency_ms": lat, "size_bits": qn.size_bits()["total"]}

    uniform = {b: score(Policy.uniform(model, b, act_bits=b)) for b in range(2, 9)}
    print(f"\n{Path(meta['render'].data).name}, first {a.views} test views, post-training quantization; "
          f"{a.hw_preset}, rtl_calibrated")
    print(f"{'policy':<12}{'PSNR dB':>9}{'latency ms':>12}{'size KiB':>10}")
    for b, r in uniform.items():
        print(f"{'uniform ' + str(b):<12}{r['psnr']:>9.2f}{r['latency_ms']:>12.2f}{r['size_bits'] / 8192:>10.1f}")
    ratios, interpolated = [], []
    front = sorted((u["psnr"], u["latency_ms"]) for u in uniform.values())
    for seed, pol in found.items():
        r = score(pol)
        ok = [u for u in uniform.values() if u["psnr"] >= r["psnr"]]
        ref = min(ok, key=lambda u: u["latency_ms"]) if ok else uniform[8]
        ratios.append((ref["latency_ms"] / r["latency_ms"], r["psnr"] - ref["psnr"], ref["size_bits"] / r["size_bits"]))
        interpolated.append(uniform_latency_at(front, r["psnr"]) / r["latency_ms"])
        print(f"{'found s' + str(seed):<12}{r['psnr']:>9.2f}{r['latency_ms']:>12.2f}{r['size_bits'] / 8192:>10.1f}"
              f"   vs uniform at {ref['psnr']:.2f} dB: {ratios[-1][0]:.2f}x lower latency, "
              f"{ratios[-1][2]:.2f}x smaller")
    lat_r, d_psnr, size_r = (statistics.median(x) for x in zip(*ratios, strict=True))
    spread = [f"{x[0]:.2f}" for x in ratios]
    print(f"latency ratio per seed: {', '.join(spread)}  ({(time.perf_counter() - t0) / 60:.1f} min)")
    print("against the uniform points interpolated linearly in PSNR order (their latency at "
          f"the found PSNR): {', '.join(f'{x:.2f}' for x in interpolated)}, median "
          f"{statistics.median(interpolated):.2f}")
    (a.out / "bench.json").write_text(json.dumps({"uniform": uniform, "ratios": ratios}, indent=1))
    print(f"latency_ratio={lat_r:.3f} psnr_delta_db={d_psnr:.3f} size_ratio={size_r:.3f} seeds={len(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
