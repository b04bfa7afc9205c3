"""Quantization-aware fine-tuning of a trained NeRF for one policy.

    python -m hero.qat --ckpt runs/NAME/checkpoint.pt --policy policy.json --out runs/NAME/qat [--steps 400]

Trains the float weights through the fake-quant path (straight-through rounding), re-deriving the
table and weight scales and GPTQ's roundings from the current weights every few steps; activation
ranges stay as calibrated on training rays; the learning rate decays from --lr to 0 (cosine).
The budget is --steps, --rays (per step) and --lr. Model selection: every checkpoint is scored on
a fixed set of --held-out-rays random pixels of the val split (hero.quant.heldout, the rays the
search scores on), and the model kept is the one of least error there among step 0 (the PTQ
model) and every checkpoint, so QAT never hands back a model worse than PTQ on those rays.
Re-running the same command resumes from <out>/qat_state.pt; a state of other settings is refused.
Ctrl-C finishes the step in progress, saves the state and exits 130 with one line.
At the end it writes metrics.json (test PSNR and SSIM through the fake-quant path, size, the
held-out PSNR of each checkpoint), policy.json, model.npz (the hardware export, for uniform
tables) and test renders.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hero import atomic, checkpoint, cli
from hero.data.rays import pixel_rays
from hero.intarith import MAX_WBITS, MIN_WBITS
from hero.nerf.evaluate import evaluate_views
from hero.nerf.metrics import mse_to_psnr
from hero.nerf.render import camera_meta, prepare_rays, render_rays

from .interrupt import Interrupted, Interruptible
from .quant.calib import calibrated_ranges, checkpoint_scenes
from .quant.export import export
from .quant.heldout import held_out_rays, squared_errors
from .quant.policy import Policy, load_policy
from .quant.qnerf import ROUNDINGS, FakeQuantField, QuantizedNeRF, Ranges, fp32_size_bits

STATE = "qat_state.pt"
#: the budget's defaults (python -m hero.qat, bench.quant); measured on lego in docs/quant.md
STEPS, LR, RAYS = 400, 1e-3, 2048
HELD_OUT_RAYS = 16384  # val-split pixels that select the model (the search's default too)
RANGE_LR = 1e-2  # learning rate of the activation ranges' log-gains (0: ranges stay as calibrated)
STATE_VERSION = 2  # bump when a resumed state would no longer mean the same run


def qat(ckpt: str | Path, policy: Policy | str | Path, out: str | Path, steps: int = STEPS, lr: float = LR,
        rays: int = RAYS, refresh_every: int = 25, ckpt_every: int = 50, test_views: int | None = None,
        fuse_relu: bool = True, tables: str = "uniform", progress: bool = True, seed: int = 0,
        held_out: int = HELD_OUT_RAYS, rounding: str = "gptq", range_lr: float = RANGE_LR) -> dict:
    """Fine-tune `ckpt` under `policy` for `steps` steps of `rays` rays at learning rate `lr` (cosine to 0);
    keep the model of least error on `held_out` val-split rays among step 0 (PTQ) and every
    `ckpt_every` steps. Returns (and writes to out/metrics.json) its test PSNR, SSIM and size."""
    out = Path(out)
    if steps < 0 or rays < 1 or held_out < 1 or not lr >= 0 or not range_lr >= 0 or refresh_every < 1 \
            or ckpt_every < 1:
        raise ValueError("QAT needs steps >= 0, rays >= 1, held_out >= 1, lr >= 0, range_lr >= 0, "
                         "refresh_every >= 1 and ckpt_every >= 1")
    status = cli.Status(progress)
    status(f"loading {ckpt} and its scene")
    model, meta = checkpoint.load(ckpt)
    if not isinstance(policy, Policy):
        policy = load_policy(policy, model)
    train_scene, val_scene, test_scene = checkpoint_scenes(meta)
    grid, dt, max_steps, background = meta["render"].render_args()
    # Everything that makes a run, but its length: a rerun with more steps carries on.
    key = {"version": STATE_VERSION, "policy": policy.to_dict(), "tables": tables, "fuse_relu": fuse_relu,
           "rounding": rounding, "lr": lr, "rays": rays, "seed": seed, "held_out": held_out,
           "refresh_every": refresh_every, "ckpt_every": ckpt_every, "range_lr": range_lr}
    state_path, step = out / STATE, 0
    if state_path.exists():
        st = checkpoint.load_run_state(state_path, "QAT state", "key", key)
        model.load_state_dict(st["model"])
        ranges, step, best, history = Ranges(**st["ranges"]), st["step"], st["best"], st["history"]
    else:
        st, best, history = None, None, []
        status(f"calibrating activation ranges on training rays ({len(train_scene)} views)")
        ranges = calibrated_ranges(model, meta, train_scene, seed)
    status(f"quantizing the model ({rounding} rounding of the weights)")
    qn = QuantizedNeRF(model, policy, ranges, fuse_relu=fuse_relu, tables=tables, rounding=rounding)
    field = FakeQuantField(qn)
    groups = [{"params": list(model.parameters()), "lr0": lr}]
    if range_lr > 0:
        groups.append({"params": qn.learn_ranges(), "lr0": range_lr})
    opt = torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99), eps=1e-15)
    if st is not None:
        opt.load_state_dict(st["optimizer"])
    val_rays = held_out_rays(val_scene, held_out, seed)

    def keep_if_best() -> None:
        """Model selection on the held-out rays: QAT must not hand back a model worse than it got."""
        nonlocal best
        model.eval()
        err = squared_errors(field, grid, val_rays, dt, max_steps, background)  # of qn as refreshed
        model.train()
        mse = float(err.mean())
        history.append({"step": step, "val_psnr": mse_to_psnr(mse)})
        if best is None or mse < best["mse"]:
            best = {"mse": mse, "step": step, "model": copy.deepcopy(model.state_dict()),
                    "ranges": {"encoding": qn.ranges.encoding, "inputs": dict(qn.ranges.inputs)},
                    "ptq_mse": mse if best is None else best["ptq_mse"]}

    if best is None:
        status(f"scoring the post-training-quantized model on {held_out} held-out rays")
        keep_if_best()  # step 0: the post-training-quantized model

    def save_state():
        checkpoint.save(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                     "ranges": vars(qn.ranges), "key": key, "best": best, "history": history})

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
    with Interruptible() as stop:
        while step < steps:
            idx = torch.from_numpy(rng.integers(0, len(c2w), rays))
            px = torch.from_numpy(rng.integers(0, cam["width"], rays))
            py = torch.from_numpy(rng.integers(0, cam["height"], rays))
            o, d = prepare_rays(*pixel_rays(c2w[idx], px, py, cam["fx"], cam["fy"], cam["cx"], cam["cy"]), cam)
            target = images[idx, py, px].float() / 255.0
            for g in opt.param_groups:  # cosine decay to zero: the last steps settle on the rounding grid
                g["lr"] = g["lr0"] * 0.5 * (1.0 + math.cos(math.pi * step / max(steps, 1)))
            color, _ = render_rays(field, grid, o, d, dt, max_steps, background)
            loss = ((color - target) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            at_ckpt = step % ckpt_every == 0 or step == steps
            if at_ckpt or step % refresh_every == 0:
                qn.fold_ranges()  # the learned ranges into the requantizers, then every integer re-derived
            if at_ckpt:
                keep_if_best()
                save_state()
            if bar is not None:
                bar.update(1)
                lv = float(loss.detach())
                bar.set_postfix(loss=f"{lv:.4f}", psnr=f"{mse_to_psnr(lv):.2f}")
            if stop.requested and step < steps:  # Ctrl-C: the ranges folded, the state saved, one line
                qn.fold_ranges()
                save_state()
                if bar is not None:
                    bar.close()
                raise Interrupted(step, str(state_path))
    if bar is not None:
        bar.close()
    model.load_state_dict(best["model"])
    qn.ranges = replace(qn.ranges, **best["ranges"])  # the activation ranges it had then
    qn.refresh()
    model.eval()
    ev = evaluate_views(field, grid, test_scene, dt, max_steps, background, test_views, out / "renders",
                        progress="QAT: test views" if progress else None)
    size = qn.size_bits()
    result = {"psnr": ev["psnr"], "ssim": ev["ssim"], "test_views": ev["views"], "steps": step,
              "size_bits": size, "fp32_bits": fp32_size_bits(model),
              "compression": fp32_size_bits(model) / size["total"], "seconds": time.perf_counter() - t0,
              "policy": policy.to_dict(), "tables": tables, "fuse_relu": fuse_relu, "rounding": rounding,
              "lr": lr, "rays": rays, "held_out_rays": held_out, "best_step": best["step"],
              "val_psnr": mse_to_psnr(best["mse"]), "val_psnr_ptq": mse_to_psnr(best["ptq_mse"]),
              "history": history}
    policy.save(out / "policy.json")
    if tables == "uniform":
        export(qn, out / "model.npz")
    atomic.write_json(out / "metrics.json", result)
    return result


def parser() -> cli.ArgumentParser:
    ap = cli.ArgumentParser(prog="python -m hero.qat", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="checkpoint from python -m hero.train")
    ap.add_argument("--policy", required=True,
                    help=f"policy JSON file, or uniformN with N in {MIN_WBITS}..{MAX_WBITS} (e.g. uniform4)")
    ap.add_argument("--out", type=Path, required=True, help="results folder; rerunning the same command resumes")
    ap.add_argument("--steps", type=cli.number(int, lo=0), default=STEPS, help="QAT steps (0: PTQ only)")
    ap.add_argument("--lr", type=cli.number(float, lo=0), default=LR)
    ap.add_argument("--rays", type=cli.number(int, lo=1), default=RAYS, help="rays per step")
    ap.add_argument("--held-out-rays", type=cli.number(int, lo=1), default=HELD_OUT_RAYS,
                    help="val-split rays that select the model kept (default %(default)s)")
    ap.add_argument("--test-views", type=cli.number(int, lo=1), default=None,
                    help="evaluate the first N test views (default all)")
    ap.add_argument("--tables", choices=("uniform", "kmeans"), default="uniform")
    ap.add_argument("--no-fuse-relu", action="store_true", help="quantize before the ReLU (for comparison)")
    ap.add_argument("--rounding", choices=ROUNDINGS, default="gptq",
                    help="weights' integers: GPTQ on calibration inputs (default) or round to nearest")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def uniform_bits(name: str) -> int | None:
    """N of a policy named uniformN (None for a file name); BadInput when N is not a bit width."""
    if not (name.startswith("uniform") and name[7:].isdigit()):
        return None
    bits = int(name[7:])
    if not MIN_WBITS <= bits <= MAX_WBITS:
        raise cli.BadInput(f"--policy {name}: uniform bits must be {MIN_WBITS}..{MAX_WBITS}")
    return bits


def main(argv=None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.ckpt.is_dir():
        ap.error(f"--ckpt {a.ckpt}: is a folder, expected a checkpoint file (.pt)")
    if not a.ckpt.is_file():
        ap.error(f"--ckpt {a.ckpt}: no such file")
    try:  # everything a user can get wrong is refused here, before seconds of work
        bits = uniform_bits(a.policy)
        atomic.check_folder(a.out)
        model, _ = checkpoint.load(a.ckpt)
        policy = Policy.uniform(model, bits) if bits is not None else load_policy(a.policy, model)
        if (a.out / STATE).exists():
            checkpoint.load_state(a.out / STATE)  # a broken state is named before the work
        res = qat(a.ckpt, policy, a.out, steps=a.steps, lr=a.lr, rays=a.rays, test_views=a.test_views,
                  fuse_relu=not a.no_fuse_relu, tables=a.tables, progress=not a.no_progress, rounding=a.rounding,
                  held_out=a.held_out_rays)
    except KeyboardInterrupt as e:  # the last checkpointed step is kept in <out>/qat_state.pt
        return cli.interrupted(e)
    except ValueError as e:  # BadInput (scene, checkpoint, policy, --out) and bad settings
        return cli.refuse(str(e))
    print(f"QAT {res['steps']} steps (kept step {res['best_step']}: val PSNR {res['val_psnr']:.2f} dB, "
          f"PTQ {res['val_psnr_ptq']:.2f}): test PSNR {res['psnr']:.2f} dB, SSIM {res['ssim']:.4f}, "
          f"{res['size_bits']['total'] / 8 / 1024:.1f} KiB ({res['compression']:.1f}x smaller than FP32) "
          f"-> {a.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
