"""Weight-scale granularity and the SH step on lego: one scale per layer or per output channel,
the SH input at its calibrated step or at the step of least output error.

    python -m bench.quant_scales [--ckpt runs/bench_lego/checkpoint.pt] [--views 5]

Post-training quantization (GPTQ, importance-drawn calibration inputs), PSNR on the first `--views`
test views through the fake-quant path. Weight policies list density.fc0, density.fc1, color.fc0,
color.fc1, color.fc2; tables and activations stay at 8 bits, except the uniform rows, which set
tables, weights and activations to b bits. Last line:
w5_layer_db=<p> w5_channel_db=<p> w4_channel_step1_db=<p> w4_channel_db=<p> fp32_db=<p>
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench import flags
from hero import checkpoint, cli
from hero.nerf.evaluate import evaluate_views
from hero.quant.calib import calibrated_ranges, checkpoint_scenes
from hero.quant.policy import Policy
from hero.quant.qnerf import FakeQuantField, QuantizedNeRF

DEFAULT_CKPT = Path("runs/bench_lego/checkpoint.pt")
CONFIGS = {  # name: QuantizedNeRF keywords
    "per layer, calibrated SH step": {"granularity": "layer", "sh_steps": (1.0,)},
    "per layer, SH step chosen": {"granularity": "layer"},
    "per channel, calibrated SH step": {"sh_steps": (1.0,)},
    "per channel, SH step chosen (default)": {},
}
WEIGHTS = ["8", "7", "6", "5", "4", "56655", "54655", "65768"]


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.quant_scales", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    ap.add_argument("--views", type=cli.number(int, lo=1), default=5, help="test views for PSNR")
    a = ap.parse_args(argv)
    flags.checkpoint_file(ap, "--ckpt", a.ckpt, flags.TRAIN_LEGO)
    t0 = time.perf_counter()
    try:
        model, meta = checkpoint.load(a.ckpt)
        train, _, test = checkpoint_scenes(meta)
    except cli.BadInput as e:  # the checkpoint's scene is not there
        return cli.refuse(str(e))
    grid, dt, steps, bg = meta["render"].render_args()
    ranges = calibrated_ranges(model, meta, train)
    layers = [n for n, k, _ in model.quant_units() if k == "linear"]

    def weights_policy(spec: str) -> Policy:
        p = Policy.uniform(model, 8)
        bits = [int(spec)] * len(layers) if len(spec) == 1 else [int(c) for c in spec]
        p.weights.update(zip(layers, bits, strict=True))
        return p

    def psnr(policy: Policy | None, kw: dict) -> float:
        field = model if policy is None else FakeQuantField(QuantizedNeRF(model, policy, ranges, **kw))
        return evaluate_views(field, grid, test, dt, steps, bg, a.views)["psnr"]

    fp32 = psnr(None, {})
    names = ["/".join(w) if len(w) > 1 else w for w in WEIGHTS]
    print(f"\nlego, first {a.views} test views, FP32 {fp32:.2f} dB; weights only (tables, activations 8)")
    print(f"{'weight scales, SH step':<40}" + "".join(f"{n:>11}" for n in names))
    table = {}
    for name, kw in CONFIGS.items():
        table[name] = {w: psnr(weights_policy(w), kw) for w in WEIGHTS}
        print(f"{name:<40}" + "".join(f"{table[name][w]:>11.2f}" for w in WEIGHTS), flush=True)
    print(f"\nuniform b (tables, weights, activations){'':<1}" + "".join(f"{b:>8}" for b in range(4, 9)))
    for name in ("per layer, calibrated SH step", "per channel, SH step chosen (default)"):
        row = [psnr(Policy.uniform(model, b, act_bits=b), CONFIGS[name]) for b in range(4, 9)]
        print(f"{name:<40}" + "".join(f"{p:>8.2f}" for p in row), flush=True)
    print(f"({(time.perf_counter() - t0) / 60:.1f} min)")
    layer, chan = table["per layer, calibrated SH step"], table["per channel, SH step chosen (default)"]
    print(f"w5_layer_db={layer['5']:.2f} w5_channel_db={chan['5']:.2f} "
          f"w4_channel_step1_db={table['per channel, calibrated SH step']['4']:.2f} w4_channel_db={chan['4']:.2f} "
          f"fp32_db={fp32:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
