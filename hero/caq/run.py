"""CAQ's learned-bit-width QAT on a trained checkpoint (docs/caq.md).

The schedule is CAQ's, scaled to `steps` (CAQ: 3000): PTQ calibration on training batches (grow-only
min/max, every quantizer at 8 bits), then QAT with three Adam optimizers: weights and table at
lr_q (1e-4 for MDL, 1e-3 for MGL), ranges at lr_q, soft bits at 1e-2, all constant for the first
two thirds of the steps and then decayed by 0.1^min(k / (steps/3), 1). Adam moves a soft bit by
about its learning rate per step, so with fewer steps than CAQ's the bits' rate is raised in
proportion (at most to 0.1): they can travel as far as in CAQ's 3000 steps (docs/caq.md).
Each step has two objectives on one forward pass: the soft bits follow only
sqrt(abs(L - L_target)) + lambda P, everything else only L, CAQ's SmoothL1 (beta 1) colour loss.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hero import atomic, checkpoint
from hero.interrupt import Interrupted, Interruptible
from hero.nerf.evaluate import evaluate_views
from hero.nerf.render import camera_meta, frame_samples, render_rays
from hero.quant.calib import checkpoint_scenes
from hero.quant.heldout import held_out_rays

from .field import CAQField

STATE = "caq_state.pt"
TARGETS = ("mdl", "mgl")
CAQ_STEPS = 3000  # CAQ's QAT iterations; the decay starts at 2000 of them
BASE_LR = 1e-2  # CAQ's opt.lr: the bits' learning rate, and lr_q = BASE_LR * qat_lr
QAT_LR = {"mdl": 1e-2, "mgl": 1e-1}  # CAQ's qat_lr per target
LOSS_FP_BATCHES = 16  # training batches that measure the float model's loss (the MDL target)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CAQ's colour loss: SmoothL1 with beta 1 (0.5 MSE for small errors)."""
    return F.smooth_l1_loss(pred, target, beta=1.0)


def loss_to_psnr(loss: float) -> float:
    """PSNR of a SmoothL1 loss in its quadratic region (MSE = 2 L)."""
    return -10.0 * float(np.log10(max(2.0 * loss, 1e-12)))


def loss_target(target: str, psnr_target: float, loss_fp: float) -> float:
    """MDL: the float model's loss. MGL: the loss of the PSNR target, never below the float model's."""
    if target == "mdl":
        return loss_fp
    return max(0.5 * 10.0 ** (-psnr_target / 10.0), loss_fp)


def lr_factor(step: int, steps: int) -> float:
    """CAQ's schedule, scaled: constant for the first 2/3 of the steps, then 0.1^min(k / (steps/3), 1)."""
    start = (2 * steps) // 3
    if step < start:
        return 1.0
    return 0.1 ** min((step - start) / max(steps - start, 1), 1.0)


MAX_BIT_LR = 0.1  # the raised rate's cap: a soft bit moves at most about 0.1 bit per step


def bit_lr(steps: int) -> float:
    """The soft bits' learning rate: CAQ's 1e-2, raised by 3000 / steps for shorter runs (at most 0.1)."""
    return min(BASE_LR * max(1.0, CAQ_STEPS / steps), MAX_BIT_LR)


def batch(scene, rays: int, seed: int, step: int):
    """The step's training rays: a fixed function of (seed, step), so a resumed run sees the same ones."""
    return held_out_rays(scene, rays, seed=[seed, step])


def caq(ckpt: str | Path, out: str | Path, target: str = "mgl", psnr_target: float = 30.0, lam: float = 1e-3,
        steps: int = CAQ_STEPS, rays: int = 4096, seed: int = 0, calib_batches: int = 100, test_views: int | None = 5,
        ckpt_every: int = 100, progress: bool = True, on_step=None) -> dict:
    """Run CAQ on a checkpoint; write policy.json, metrics.json and renders into `out`; resume from
    out/caq_state.pt. `on_step(step)` is called after every step (tests use it)."""
    from hero.search.run import model_fingerprint

    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    out = Path(out)
    t0 = time.perf_counter()
    model, meta = checkpoint.load(ckpt)
    grid, dt, max_steps, bg = meta["render"].render_args()
    train_scene, _, test_scene = checkpoint_scenes(meta)
    field = CAQField(model)
    groups = {"model": field.model_parameters(), "ranges": field.range_parameters(), "bits": field.bit_parameters()}
    lrs = {"model": BASE_LR * QAT_LR[target], "ranges": BASE_LR * QAT_LR[target], "bits": bit_lr(steps)}
    opts = {k: torch.optim.Adam(p, lr=lrs[k], betas=(0.9, 0.99), eps=1e-15) for k, p in groups.items()}
    settings = {"model": model_fingerprint(model), "target": target, "psnr_target": psnr_target, "lambda": lam,
                "steps": steps, "rays": rays, "seed": seed, "calib_batches": calib_batches}
    state_path, step = out / STATE, 0
    if state_path.exists():
        st = checkpoint.load_run_state(state_path, "CAQ state", "settings", settings)
        field.load_state_dict(st["field"])
        for k, o in opts.items():
            o.load_state_dict(st["optimizers"][k])
        step, loss_fp, t_loss, elapsed = st["step"], st["loss_fp"], st["loss_target"], st["seconds"]
    else:
        elapsed = 0.0
        calibrate(field, grid, train_scene, dt, max_steps, bg, rays, calib_batches, seed, progress)
        loss_fp = float_loss(model, grid, train_scene, dt, max_steps, bg, rays, seed)
        t_loss = loss_target(target, psnr_target, loss_fp)

    def save_state() -> None:
        checkpoint.save(state_path, {"field": field.state_dict(),
                                     "optimizers": {k: o.state_dict() for k, o in opts.items()}, "step": step,
                                     "settings": settings, "loss_fp": loss_fp, "loss_target": t_loss,
                                     "seconds": elapsed + time.perf_counter() - t0})

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc=f"CAQ {target}", unit="step", dynamic_ncols=True)
    field.train()
    with Interruptible() as stop:
        while step < steps:
            loss, loss_bit = train_step(field, opts, grid, train_scene, dt, max_steps, bg, rays, seed, step, steps,
                                        t_loss, lam)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.5f}", psnr=f"{loss_to_psnr(loss):.2f}", target=f"{t_loss:.5f}",
                                mean_bits=f"{field.mean_bits():.2f}", loss_bit=f"{loss_bit:.3f}")
            if on_step is not None:
                on_step(step)
            if step % ckpt_every == 0 or step == steps or stop.requested:
                save_state()
            if stop.requested and step < steps:
                if bar is not None:
                    bar.close()
                raise Interrupted(step, str(state_path))
    if bar is not None:
        bar.close()
    return finish(field, meta, test_scene, out, settings, loss_fp, t_loss, step, test_views,
                  elapsed + time.perf_counter() - t0, progress)


def train_step(field: CAQField, opts: dict, grid, scene, dt, max_steps, bg, rays, seed, step, steps, t_loss, lam):
    """One CAQ step: the bits' gradient from sqrt(abs(L - L_target)) + lambda P, the others' from L
    (one backward pass of L serves both)."""
    o, d, target = batch(scene, rays, seed, step)
    torch.manual_seed(seed * 1_000_003 + step)  # the march's jitter
    for o_ in opts.values():
        for g in o_.param_groups:
            g["lr"] = g.setdefault("initial_lr", g["lr"]) * lr_factor(step, steps)
    color, _ = render_rays(field, grid, o, d, dt, max_steps, bg)
    loss = smooth_l1(color, target)
    for o_ in opts.values():
        o_.zero_grad(set_to_none=True)
    loss.backward()  # every parameter's dL; the bits' is rescaled below
    penalty = set_bit_grads(field, float(loss.detach()), t_loss, lam)
    for o_ in opts.values():
        o_.step()
    loss_bit = bit_objective(loss.detach(), t_loss, lam, penalty.detach())
    field.project_bits()
    return float(loss.detach()), float(loss_bit.detach())


def set_bit_grads(field: CAQField, loss: float, t_loss: float, lam: float) -> torch.Tensor:
    """Turn the bits' dL/db (left by L's backward pass) into the gradient of CAQ's bit objective:
    d/db [sqrt(abs(L - L_target)) + lambda P] = sign(L - L_target) / (2 sqrt(abs(L - L_target))) dL/db
    + lambda dP/db. CAQ runs a second backward pass of that objective; the chain rule gives the same
    gradient from the one pass. Returns P."""
    bit_params = field.bit_parameters()
    penalty = field.penalty()
    d_penalty = torch.autograd.grad(penalty, bit_params, allow_unused=True)
    gap = loss - t_loss
    scale = (1.0 if gap > 0 else -1.0) * 0.5 / (abs(gap) + 1e-20) ** 0.5
    for p, gp in zip(bit_params, d_penalty, strict=True):
        dl = torch.zeros_like(p) if p.grad is None else p.grad
        p.grad = scale * dl + lam * (torch.zeros_like(p) if gp is None else gp)
    return penalty


def bit_objective(loss: torch.Tensor, t_loss: float, lam: float, penalty: torch.Tensor) -> torch.Tensor:
    """CAQ's objective for the soft bits: sqrt(abs(L - L_target)) + lambda P."""
    return torch.sqrt((loss - t_loss).abs() + 1e-20) + lam * penalty


@torch.no_grad()
def calibrate(field: CAQField, grid, scene, dt, max_steps, bg, rays, batches, seed, progress) -> None:
    """CAQ's PTQ pass: training batches through the quantized model, each quantizer widening its range."""
    from tqdm import tqdm

    field.calibrating(True)
    field.train()
    for i in tqdm(range(batches), desc="CAQ calibration", unit="batch", disable=not progress, dynamic_ncols=True):
        o, d, _ = batch(scene, rays, seed + 7919, i)
        torch.manual_seed(seed * 1_000_003 + 10 ** 8 + i)
        render_rays(field, grid, o, d, dt, max_steps, bg)
    field.calibrating(False)


@torch.no_grad()
def float_loss(model, grid, scene, dt, max_steps, bg, rays, seed) -> float:
    """The float model's SmoothL1 loss on training batches (CAQ's loss_fp)."""
    total = 0.0
    for i in range(LOSS_FP_BATCHES):
        o, d, target = batch(scene, rays, seed + 104729, i)
        torch.manual_seed(seed * 1_000_003 + 2 * 10 ** 8 + i)
        color, _ = render_rays(model, grid, o, d, dt, max_steps, bg)
        total += float(smooth_l1(color, target))
    return total / LOSS_FP_BATCHES


def finish(field: CAQField, meta, test_scene, out: Path, settings, loss_fp, t_loss, step, test_views, seconds,
           progress: bool = False) -> dict:
    """CAQ's own figures (its fake-quantized model on the test views), and its widths as a policy."""
    grid, dt, max_steps, bg = meta["render"].render_args()
    field.eval()
    ev = evaluate_views(field, grid, test_scene, dt, max_steps, bg, test_views, out / "renders",
                        progress="CAQ: test views" if progress else None)
    s = frame_samples(grid, torch.from_numpy(test_scene.c2w[0]), camera_meta(test_scene), dt, max_steps)
    policy = field.policy()
    policy.save(out / "policy.json")
    size = field.size_bits()
    result = {"method": "caq", **settings, "steps_done": step, "loss_fp": loss_fp, "loss_target": t_loss,
              "psnr": ev["psnr"], "ssim": ev["ssim"], "test_views": ev["views"], "bits": field.hard_bits(),
              "mean_bits": field.mean_bits(), "size_bits": size, "size_kib": size / 8192,
              "bitops_t": field.bitops(len(s) / max(s.n_rays, 1), s.n_rays), "policy": policy.to_dict(),
              "seconds": seconds}
    atomic.write_json(out / "metrics.json", result)
    return result
