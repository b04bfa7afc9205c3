"""Quantization on lego: PSNR and size of FP32, uniform policies (post-training and after QAT),
k-means against uniform tables, fused against unfused ReLU, and a mixed policy.

    python -m bench.quant [--ckpt runs/bench_lego/checkpoint.pt] [--views 5] [--qat-steps N] [--qat-rays N]
                          [--qat-lr X]

The checkpoint is the cpu-preset lego model of `python -m bench.train_lego`. PSNR is on the first
`--views` test views, through the fake-quant path (which tests/test_quant.py shows equal to the
integer path up to the HEU's documented fixed-point error). QAT runs hero.qat with the budget of
--qat-steps, --qat-rays and --qat-lr (hero.qat's defaults). Sizes count tables, weights, scales
and codebooks in bits. Last line:
fp32_psnr=<x> int8_ptq_drop_db=<d> best_compression=<c> best_compression_drop_db=<d> u4_qat_gain_db=<g>
qat_min_gain_db=<m>
(u4_qat_gain_db: uniform 4-bit after QAT minus uniform 4-bit PTQ; qat_min_gain_db: the least of
every configuration's QAT minus PTQ, negative if QAT lost anywhere; all on the test views.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import flags
from hero import checkpoint, cli
from hero.nerf.evaluate import evaluate_views
from hero.qat import LR, RAYS, STEPS, qat
from hero.quant.calib import calibrated_ranges, checkpoint_scenes
from hero.quant.policy import Policy
from hero.quant.qnerf import FakeQuantField, QuantizedNeRF, fp32_size_bits

DEFAULT_CKPT = Path("runs/bench_lego/checkpoint.pt")


def mixed_policy(model) -> Policy:
    """Tables at 4 bits with the two finest levels at 3; MLP weights by sensitivity (the first and last
    layers take fewer bits); activations at 8 (they cost the bit-serial engine no cycles)."""
    pol = Policy.uniform(model, 8, table_bits=4)
    for name in sorted(pol.tables)[-2:]:
        pol.tables[name] = 3
    pol.weights.update({"density.fc0": 4, "density.fc1": 6, "color.fc0": 6, "color.fc1": 5, "color.fc2": 5})
    return pol


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.quant", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--views", type=cli.number(int, lo=1), default=5, help="test views for PSNR")
    ap.add_argument("--qat-steps", type=cli.number(int, lo=0), default=STEPS,
                    help="QAT budget: steps (default %(default)s)")
    ap.add_argument("--qat-rays", type=cli.number(int, lo=1), default=RAYS,
                    help="QAT budget: rays per step (default %(default)s)")
    ap.add_argument("--qat-lr", type=cli.number(float, lo=0), default=LR,
                    help="QAT budget: learning rate (default %(default)s)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_quant"))
    a = ap.parse_args(argv)
    flags.checkpoint_file(ap, "--ckpt", a.ckpt, flags.TRAIN_LEGO)
    flags.out_folder(ap, a.out)
    t0 = time.perf_counter()
    try:
        model, meta = checkpoint.load(a.ckpt)
        train_scene, _, test_scene = checkpoint_scenes(meta)
    except cli.BadInput as e:  # the checkpoint's scene is not there
        return cli.refuse(str(e))
    grid, dt, steps, bg = meta["render"].render_args()
    ranges = calibrated_ranges(model, meta, train_scene)
    fp32_bits = fp32_size_bits(model)
    rows = []

    def ptq(name: str, policy: Policy, **kw) -> dict:
        qn = QuantizedNeRF(model, policy, ranges, **kw)
        ev = evaluate_views(FakeQuantField(qn), grid, test_scene, dt, steps, bg, a.views)
        row = {"config": name, "stage": "PTQ", "psnr": ev["psnr"], "ssim": ev["ssim"],
               "bits": qn.size_bits()["total"]}
        rows.append(row)
        print(f"  {name:<34} PTQ  {ev['psnr']:6.2f} dB", flush=True)
        return row

    def with_qat(name: str, policy: Policy, **kw) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            res = qat(a.ckpt, policy, tmp, steps=a.qat_steps, rays=a.qat_rays, lr=a.qat_lr, test_views=a.views,
                      progress=False, **kw)
        row = {"config": name, "stage": "QAT", "psnr": res["psnr"], "ssim": res["ssim"],
               "bits": res["size_bits"]["total"]}
        rows.append(row)
        print(f"  {name:<34} QAT  {res['psnr']:6.2f} dB", flush=True)
        return row

    ev = evaluate_views(model, grid, test_scene, dt, steps, bg, a.views)
    fp32 = {"config": "FP32", "stage": "-", "psnr": ev["psnr"], "ssim": ev["ssim"], "bits": fp32_bits}
    rows.append(fp32)
    print(f"  FP32                               {ev['psnr']:6.2f} dB", flush=True)
    int8 = None
    for b in (8, 6, 4, 3):  # tables, weights and activations at b bits (the first layer's input is s8)
        r = ptq(f"uniform {b}-bit", Policy.uniform(model, b, act_bits=b))
        int8 = r if b == 8 else int8
        with_qat(f"uniform {b}-bit", Policy.uniform(model, b, act_bits=b))
    for b in (4, 3, 2):
        pol = Policy.uniform(model, 8, table_bits=b)
        ptq(f"tables {b}-bit uniform (MLP 8)", pol)
        ptq(f"tables {b}-bit k-means (MLP 8)", pol, tables="kmeans")
    ptq("uniform 4-bit, rounded to nearest", Policy.uniform(model, 4, act_bits=4), rounding="nearest")
    ptq("uniform 4-bit, one scale per layer", Policy.uniform(model, 4, act_bits=4), granularity="layer",
        sh_steps=(1.0,))
    ptq("weights 5-bit (tables, act 8)", Policy.uniform(model, 5, table_bits=8))
    ptq("weights 5-bit, one scale per layer", Policy.uniform(model, 5, table_bits=8), granularity="layer",
        sh_steps=(1.0,))
    ptq("uniform 4-bit, max-abs scales", Policy.uniform(model, 4, act_bits=4), scales="max")
    ptq("uniform 4-bit, ReLU not fused", Policy.uniform(model, 4, act_bits=4), fuse_relu=False)
    with_qat("uniform 4-bit, ReLU not fused", Policy.uniform(model, 4, act_bits=4), fuse_relu=False)
    ptq("mixed (tables 4/3, MLP 4-6, act 8)", mixed_policy(model))
    with_qat("mixed (tables 4/3, MLP 4-6, act 8)", mixed_policy(model))

    print(f"\nlego, {test_scene.width}x{test_scene.height}, first {a.views} test views; sizes in KiB "
          f"(tables + weights + scales + codebooks)")
    print(f"{'configuration':<36}{'stage':<6}{'PSNR dB':>8}{'drop':>7}{'SSIM':>7}{'KiB':>9}{'x smaller':>10}")
    for r in rows:
        print(f"{r['config']:<36}{r['stage']:<6}{r['psnr']:>8.2f}{fp32['psnr'] - r['psnr']:>7.2f}{r['ssim']:>7.3f}"
              f"{r['bits'] / 8192:>9.1f}{fp32_bits / r['bits']:>10.1f}")
    good = [r for r in rows if r["stage"] == "QAT" and fp32["psnr"] - r["psnr"] <= 0.5]
    best = max(good, key=lambda r: fp32_bits / r["bits"]) if good else None
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "quant.json").write_text(json.dumps({"rows": rows, "fp32_bits": fp32_bits}, indent=1))
    print(f"({(time.perf_counter() - t0) / 60:.1f} min; rows in {a.out / 'quant.json'})")
    comp = fp32_bits / best["bits"] if best else 0.0
    drop = fp32["psnr"] - best["psnr"] if best else float("nan")
    ptq_of = {r["config"]: r["psnr"] for r in rows if r["stage"] == "PTQ"}
    gains = {r["config"]: r["psnr"] - ptq_of[r["config"]] for r in rows if r["stage"] == "QAT"}
    print(f"fp32_psnr={fp32['psnr']:.2f} int8_ptq_drop_db={fp32['psnr'] - int8['psnr']:.3f} "
          f"best_compression={comp:.1f} best_compression_drop_db={drop:.2f} "
          f"u4_qat_gain_db={gains['uniform 4-bit']:.2f} qat_min_gain_db={min(gains.values()):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
