"""Quantization-aware fine-tuning of a trained NeRF for one policy.

    python -m hero.qat --ckpt runs/NAME/checkpoint.pt --policy policy.json --out runs/NAME/qat [--steps 500]

Trains the float weights through the fake-quant path (straight-through rounding), re-deriving the
table and weight scales and GPTQ's roundings from the current weights every few steps; activation
ranges stay as calibrated on training rays; the learning rate decays from --lr to 0 (cosine). The
weights kept are those of the best val PSNR among step 0 (PTQ) and every checkpoint. Re-running
the same command resumes from <out>/qat_state.pt. At the end it writes metrics.json (test PSNR
and SSIM through the fake-quant path, size), policy.json, model.npz (the hardware export, for
uniform tables) and test renders.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hero import atomic, checkpoint
from hero.data.rays import pixel_rays
from hero.nerf.evaluate import evaluate_views
from hero.nerf.metrics import mse_to_psnr
from hero.nerf.render import camera_meta, prepare_rays, render_rays

from .quant.calib import calibrated_ranges, checkpoint_scenes
from .quant.export import export
from .quant.policy import Policy, PolicyError, load_policy
from .quant.qnerf import ROUNDINGS, FakeQuantField, QuantizedNeRF, Ranges, fp32_size_bits

STATE = "qat_state.pt"


def qat(ckpt: str | Path, policy: Policy | str | Path, out: str | Path, steps: int = 500, lr: float = 1e-3,
        rays: int = 2048, refresh_every: int = 25, ckpt_every: int = 100, test_views: int | None = None,
        fuse_relu: bool = True, tables: str = "uniform", progress: bool = True, seed: int = 0,
        val_views: int = 2, rounding: str = "gptq") -> dict:
    out = Path(out)
    model, meta = checkpoint.load(ckpt)
    grid = meta["occupancy"]
    if not isinstance(policy, Policy):
        policy = load_policy(policy, model)
    train_scene, val_scene, test_scene = checkpoint_scenes(meta)
    dt, max_steps, background = meta["dt"], meta["max_steps"], meta["background"]

    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-15)
    state_path, step = out / STATE, 0
    if state_path.exists():
        st = checkpoint.load_state(state_path)
        if (st["policy"] != policy.to_dict() or st["tables"] != tables or st["fuse_relu"] != fuse_relu
                or st.get("rounding", "nearest") != rounding):
            raise PolicyError(f"{out} holds a QAT run of another policy or mode: use another --out")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        ranges, step, best = Ranges(**st["ranges"]), st["step"], st.get("best")
    else:
        ranges = calibrated_ranges(model, meta, train_scene, seed)
        best = None
    qn = QuantizedNeRF(model, policy, ranges, fuse_relu=fuse_relu, tables=tables, rounding=rounding)
    field = FakeQuantField(qn)

    def val_psnr() -> float:  # of the current integers (qn refreshed by the caller)
        model.eval()
        p = evaluate_views(field, grid, val_scene, dt, max_steps, background, val_views)["psnr"]
        model.train()
        return p

    def keep_if_best() -> None:
        """Model selection on the val views: QAT must not hand back a model worse than it got."""
        nonlocal best
        p = val_psnr()
        if best is None or p > best["psnr"]:
            best = {"psnr": p, "step": step, "model": copy.deepcopy(model.state_dict()),
                    "ptq_psnr": p if best is None else best["ptq_psnr"]}

    if best is None:
        keep_if_best()  # step 0: the post-training-quantized model

    def save_state():
        checkpoint.save(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                     "ranges": vars(ranges), "policy": policy.to_dict(), "tables": tables,
                                     "fuse_relu": fuse_relu, "rounding": rounding, "best": best})

    images = torch.from_numpy(train_scene.images)
    c2w = torch.as_tensor(np.asarray(train_scene.c2w), dtype=torch.float32)
    cam = camera_meta(train_scene)
    rng = np.random.default_rng(seed + step)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc="QAT", unit="step", dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    while step < steps:
        idx = torch.from_numpy(rng.integers(0, len(c2w), rays))
        px = torch.from_numpy(rng.integers(0, cam["width"], rays))
        py = torch.from_numpy(rng.integers(0, cam["height"], rays))
        o, d = prepare_rays(*pixel_rays(c2w[idx], px, py, cam["fx"], cam["fy"], cam["cx"], cam["cy"]), cam)
        target = images[idx, py, px].float() / 255.0
        for g in opt.param_groups:  # cosine decay to zero: the last steps settle on the rounding grid
            g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / max(steps, 1)))
        color, _ = render_rays(field, grid, o, d, dt, max_steps, background)
        loss = ((color - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        at_ckpt = step % ckpt_every == 0 or step == steps
        if at_ckpt or step % refresh_every == 0:
            qn.refresh()
        if at_ckpt:
            keep_if_best()
            save_state()
        if bar is not None:
            bar.update(1)
            lv = float(loss.detach())
            bar.set_postfix(loss=f"{lv:.4f}", psnr=f"{mse_to_psnr(lv):.2f}")
    if bar is not None:
        bar.close()
    model.load_state_dict(best["model"])
    qn.refresh()
    model.eval()
    ev = evaluate_views(field, grid, test_scene, dt, max_steps, background, test_views, out / "renders")
    size = qn.size_bits()
    result = {"psnr": ev["psnr"], "ssim": ev["ssim"], "test_views": ev["views"], "steps": step,
              "size_bits": size, "fp32_bits": fp32_size_bits(model),
              "compression": fp32_size_bits(model) / size["total"], "seconds": time.perf_counter() - t0,
              "policy": policy.to_dict(), "tables": tables, "fuse_relu": fuse_relu, "rounding": rounding,
              "best_step": best["step"], "val_psnr": best["psnr"], "val_psnr_ptq": best["ptq_psnr"]}
    policy.save(out / "policy.json")
    if tables == "uniform":
        export(qn, out / "model.npz")
    atomic.write_json(out / "metrics.json", result)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hero.qat", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="checkpoint from python -m hero.train")
    ap.add_argument("--policy", required=True, help="policy JSON file, or uniformN (e.g. uniform4)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rays", type=int, default=2048, help="rays per step")
    ap.add_argument("--test-views", type=int, default=None, help="evaluate the first N test views (default all)")
    ap.add_argument("--tables", choices=("uniform", "kmeans"), default="uniform")
    ap.add_argument("--no-fuse-relu", action="store_true", help="quantize before the ReLU (for comparison)")
    ap.add_argument("--rounding", choices=ROUNDINGS, default="gptq",
                    help="weights' integers: GPTQ on calibration inputs (default) or round to nearest")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if not a.ckpt.is_file():
        ap.error(f"--ckpt {a.ckpt}: no such file")
    if a.steps < 0 or a.rays < 1:
        ap.error("--steps must be >= 0 and --rays >= 1")
    try:
        policy = a.policy
        if policy.startswith("uniform") and policy[7:].isdigit():
            model, _ = checkpoint.load(a.ckpt)
            bits = int(policy[7:])
            if not 2 <= bits <= 8:
                ap.error(f"--policy {policy}: uniform bits must be 2..8")
            policy = Policy.uniform(model, bits)
        res = qat(a.ckpt, policy, a.out, steps=a.steps, lr=a.lr, rays=a.rays, test_views=a.test_views,
                  fuse_relu=not a.no_fuse_relu, tables=a.tables, progress=not a.no_progress, rounding=a.rounding)
    except (PolicyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"QAT {res['steps']} steps: test PSNR {res['psnr']:.2f} dB, SSIM {res['ssim']:.4f}, "
          f"{res['size_bits']['total'] / 8 / 1024:.1f} KiB ({res['compression']:.1f}x smaller than FP32) "
          f"-> {a.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
