"""Train an Instant-NGP field: `python -m hero.train --data PATH --preset cpu --out runs/NAME`.

Re-running the same command resumes from out/checkpoint.pt; Ctrl-C saves it first. Test PSNR/SSIM go
to out/metrics.json and rendered test views to out/renders/. Python API: `train(config) -> result`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from hero import atomic, checkpoint, cli
from hero.data import DataError, Scene, load_scene
from hero.data.rays import pixel_rays
from hero.data.scene import AUTO, check_downscale, choose_downscale
from hero.interrupt import Interrupted, Interruptible
from hero.nerf.cpu import tune_allocator
from hero.nerf.evaluate import evaluate_views
from hero.nerf.metrics import mse_to_psnr
from hero.nerf.model import NGPField, sh_encode
from hero.nerf.occupancy import OccupancyGrid
from hero.nerf.presets import MAX_SIDE, PRESETS, preset
from hero.nerf.render import (
    camera_meta,
    march,
    pixels,
    prepare_rays,
    render_samples,
    render_view,
    select_rays,
    step_size,
)

MIN_RAYS, MAX_RAYS = 64, 65536
HARD_UNITS = ("samples", "rays")


def default_config(**kw) -> dict:
    cfg = {
        "data": "procedural", "preset": "cpu", "out": "runs/default", "downscale": AUTO, "device": "auto",
        "steps": None, "minutes": None, "eval_every": 0, "eval_views": 1, "ckpt_every": 500,
        "test_views": None, "hard_mining": False, "hard_unit": "samples", "hard_keep": 0.25, "seed": 0,
        "progress": True,
        "save_renders": True, "model": None, "curve_every_s": 0.0,
    }
    cfg.update(kw)
    return cfg


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


def resolve_data(data: str | None, procedural_size: int = 100) -> Path:
    if data in (None, "", "procedural"):
        from hero.data import procedural

        return procedural.build(procedural.default_folder(), size=procedural_size)
    return Path(data)


def resolve_downscale(root: Path, downscale, preset_name: str) -> int:
    """An integer factor; 'auto' picks one for the preset (MAX_SIDE) and says which in one line."""
    if downscale != AUTO:
        return check_downscale(downscale)
    d, what = choose_downscale(root, MAX_SIDE[preset_name])
    print(f"--downscale auto: {d}, images {what}: the longest side at most {MAX_SIDE[preset_name]} px for the "
          f"{preset_name} preset (give --downscale N to choose)", flush=True)
    return d


def check_resume(cfg: dict, st: dict, ckpt: Path, root: Path) -> None:
    """A checkpoint in --out resumes only the same run: the same preset, model, scene and downscale."""
    old = st["config"]
    for key, flag in (("preset", "--preset"), ("downscale", "--downscale")):
        if key == "downscale" and cfg[key] == AUTO:
            continue
        if old.get(key) != cfg[key]:
            raise ValueError(f"{flag} {cfg[key]}: {ckpt} was trained with {flag} {old.get(key)}; give "
                             f"{flag} {old.get(key)} to resume it, or another --out")
    if old.get("model") != (cfg["model"] or preset(cfg["preset"])):
        raise ValueError(f"{ckpt} holds a model of another configuration than the {cfg['preset']} preset's; "
                         "use another --out")
    if not same_path(st["data"], root):
        raise ValueError(f"--data {cfg['data']}: {ckpt} was trained on {st['data']}; give that --data to resume "
                         "it, or another --out")


def same_path(a, b) -> bool:
    """Whether two paths name the same file or folder."""
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def check_hard_keep(keep: float, name: str = "hard_keep") -> None:
    """The share of samples that hard mining backpropagates must be in (0, 1]."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"{name} {keep}: must be in (0, 1]")


def hard_sample_backward(model, s, sh: torch.Tensor, target: torch.Tensor, background, keep: float):
    """Sample-level hard mining (Korhonen et al.): a no-grad forward on every sample; the loss's gradient
    with respect to each sample's outputs from compositing alone; then forward+backward on the `keep`
    share of samples whose gradient at the network's raw outputs is largest, fed that exact gradient.
    Accumulates into the parameters' .grad; returns (loss, samples that got a backward)."""
    sh = sh[s.ray_ids]
    with torch.no_grad():
        sigma, rgb = model.forward_sh(s.positions, sh)
    sigma.requires_grad_()
    rgb.requires_grad_()
    loss = ((pixels(sigma, rgb, s, background) - target) ** 2).mean()
    g_sigma, g_rgb = torch.autograd.grad(loss, (sigma, rgb))
    with torch.no_grad():  # through trunc_exp and the sigmoid to the raw outputs
        score = (g_sigma * sigma) ** 2 + ((g_rgb * rgb * (1.0 - rgb)) ** 2).sum(-1)
        hard = score.topk(min(len(s), max(1, int(keep * len(s)))), sorted=False).indices
    if len(hard):
        sig_h, rgb_h = model.forward_sh(s.positions[hard], sh[hard])
        torch.autograd.backward((sig_h, rgb_h), (g_sigma[hard], g_rgb[hard]))
    return float(loss.detach()), len(hard)


def hard_ray_backward(model, s, sh: torch.Tensor, target: torch.Tensor, background, keep: float):
    """Ray-level hard mining: a no-grad render of every ray, then forward+backward on the samples of
    the hardest rays (by squared error) until they fill `keep` of the batch's samples; the marched
    samples are reused. Accumulates into .grad; returns (loss, samples that got a backward)."""
    with torch.no_grad():
        err = ((render_samples(model, s, sh, background) - target) ** 2).sum(-1)
    order = err.argsort(descending=True)
    cum = torch.bincount(s.ray_ids, minlength=len(err))[order].cumsum(0)
    hard = order[:max(1, int((cum <= keep * len(s)).sum()))].sort().values
    sub = select_rays(s, hard)
    color = render_samples(model, sub, sh[hard], background[hard] if torch.is_tensor(background) else background)
    loss = ((color - target[hard]) ** 2).mean()
    loss.backward()
    return float(loss.detach()), len(sub)


class Trainer:
    """State of one training run (model, occupancy grid, optimiser, data on the device)."""

    def __init__(self, cfg: dict):
        if cfg["hard_unit"] not in HARD_UNITS:
            raise ValueError(f"hard_unit {cfg['hard_unit']!r}: choose one of {', '.join(HARD_UNITS)}")
        check_hard_keep(cfg["hard_keep"])
        self.cfg = cfg
        self.device = pick_device(cfg["device"])
        if self.device.type == "cpu":
            tune_allocator()
        torch.manual_seed(cfg["seed"])
        self.rng = np.random.default_rng(cfg["seed"])
        status = cli.Status(cfg["progress"])
        root = resolve_data(cfg["data"])
        self.data_path = str(root.absolute())  # a checkpoint works from any current folder
        cfg["downscale"] = resolve_downscale(root, cfg["downscale"], cfg["preset"])
        status(f"loading {root} at 1/{cfg['downscale']} (train, test and val views)")
        self.train_scene = load_scene(root, "train", cfg["downscale"])
        self.test_scene = load_scene(root, "test", cfg["downscale"])
        try:
            self.val_scene = load_scene(root, "val", cfg["downscale"])
        except DataError:
            self.val_scene = self.test_scene
        status(f"loaded {len(self.train_scene)} training views of {self.train_scene.width}x{self.train_scene.height}")
        mcfg = cfg["model"] or preset(cfg["preset"])
        cfg["model"] = mcfg
        self.mcfg = mcfg
        aabb = torch.as_tensor(self.train_scene.aabb)
        self.model = NGPField(mcfg, aabb).to(self.device)
        self.grid = OccupancyGrid(aabb, mcfg["grid_res"]).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=mcfg["lr"], betas=(0.9, 0.99), eps=1e-15)
        self.dt = step_size(aabb, mcfg["steps_per_ray"])
        self.background = 1.0 if self.train_scene.white_background else 0.0
        self.meta = camera_meta(self.train_scene)
        self.images = torch.from_numpy(self.train_scene.images).to(self.device)
        a = self.train_scene.alpha
        self.alpha = None if a is None else torch.from_numpy(a).to(self.device)
        self.c2w = torch.from_numpy(self.train_scene.c2w).to(self.device)
        self.step = 0
        self.train_seconds = 0.0
        self.rays = mcfg["rays"]
        self.curve: list[tuple[float, int, float]] = []
        self.total_steps = cfg["steps"] or (10**9 if cfg["minutes"] else mcfg["steps"])

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "occupancy": self.grid.state_dict(), "step": self.step, "train_seconds": self.train_seconds,
                "rays": self.rays, "curve": self.curve, "config": self.cfg, "aabb": self.model.aabb.cpu(),
                "camera": self.meta, "dt": self.dt, "max_steps": self.mcfg["steps_per_ray"],
                "background": self.background, "data": self.data_path}

    def restore(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.grid.load_state_dict(st["occupancy"])
        self.step, self.train_seconds, self.rays = st["step"], st["train_seconds"], st["rays"]
        self.curve = list(st.get("curve", []))

    # -- one step ------------------------------------------------------------------------------
    def sample_rays(self, n: int):
        s = self.train_scene
        idx = torch.from_numpy(self.rng.integers(0, len(s), n)).to(self.device)
        px = torch.from_numpy(self.rng.integers(0, s.width, n)).to(self.device)
        py = torch.from_numpy(self.rng.integers(0, s.height, n)).to(self.device)
        o, d = pixel_rays(self.c2w[idx], px, py, s.fx, s.fy, s.cx, s.cy)
        o, d = prepare_rays(o, d, self.meta)
        target = self.images[idx, py, px].float() / 255.0
        if self.alpha is None:
            return o, d, target, self.background
        # Random background colours (Instant-NGP): empty space must be transparent to match them.
        bg = torch.rand(n, 3, device=self.device)
        a = self.alpha[idx, py, px].float()[:, None] / 255.0
        return o, d, target + (bg - self.background) * (1.0 - a), bg

    def lr_at(self) -> float:
        frac = self.step / self.total_steps
        if self.cfg["minutes"]:
            frac = max(frac, self.train_seconds / (60.0 * self.cfg["minutes"]))
        return self.mcfg["lr"] * 0.1 ** min(1.0, frac)  # exponential decay to 0.1x

    def autocast(self):
        """bf16 MLP matmuls in training steps (cpu preset, CPU only; the hash grid stays float32)."""
        on = bool(self.mcfg.get("mlp_bf16")) and self.device.type == "cpu"
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)

    def train_step(self) -> tuple[float, int]:
        with self.autocast():
            return self._train_step()

    def _train_step(self) -> tuple[float, int]:
        m = self.mcfg
        warm = self.step < m["occ_warmup"]
        if self.step % (m["occ_every"] // 4 if warm else m["occ_every"]) == 0:  # faster pruning in warm-up
            self.grid.update(self.model, self.dt, 1.0 if warm else 0.25, replace=warm)
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at()
        o, d, target, bg = self.sample_rays(self.rays)
        s = march(o, d, self.grid, self.dt, m["steps_per_ray"], jitter=True)
        self.opt.zero_grad(set_to_none=True)
        mining, sh = self.cfg["hard_mining"], sh_encode(d)
        if not mining:
            loss = ((render_samples(self.model, s, sh, bg) - target) ** 2).mean()
            loss.backward()
            loss = float(loss.detach())
        elif self.cfg["hard_unit"] == "samples":
            loss, n_hard = hard_sample_backward(self.model, s, sh, target, bg, self.cfg["hard_keep"])
        else:
            loss, n_hard = hard_ray_backward(self.model, s, sh, target, bg, self.cfg["hard_keep"])
        self.opt.step()
        # Adapt the ray count so that a batch holds about max_samples samples (Instant-NGP).
        per_ray = max(len(s), 1) / self.rays
        self.rays = int(min(MAX_RAYS, max(MIN_RAYS, 0.7 * self.rays + 0.3 * m["max_samples"] / per_ray)))
        self.step += 1
        return loss, len(s) + (n_hard if mining else 0)

    # -- evaluation ----------------------------------------------------------------------------
    def render(self, scene: Scene, i: int) -> torch.Tensor:
        return render_view(self.model, self.grid, torch.from_numpy(scene.c2w[i]), camera_meta(scene), self.dt,
                           self.mcfg["steps_per_ray"], self.background)

    def evaluate(self, scene: Scene, views: int | None, out_dir: Path | None = None) -> dict:
        self.model.eval()
        res = evaluate_views(self.model, self.grid, scene, self.dt, self.mcfg["steps_per_ray"], self.background,
                             views, out_dir, progress="render" if self.cfg["progress"] else None)
        self.model.train()
        return res

    def done(self) -> bool:
        if self.cfg["minutes"] and self.train_seconds >= 60.0 * self.cfg["minutes"]:
            return True
        return self.step >= self.total_steps


def train(config: dict, on_step=None) -> dict:
    """Train (resuming from out/checkpoint.pt if present), evaluate on the test views, return metrics.
    Ctrl-C saves the checkpoint and raises hero.interrupt.Interrupted. `on_step(step)` is called after
    every step (tests use it)."""
    cfg = default_config(**config)
    out = Path(cfg["out"])
    atomic.check_folder(out)
    ckpt = out / "checkpoint.pt"
    cfg["model"] = cfg["model"] or preset(cfg["preset"])
    resumed = checkpoint.check_train_state(checkpoint.load_state(ckpt), ckpt) if ckpt.exists() else None
    if resumed is not None:
        check_resume(cfg, resumed, ckpt, resolve_data(cfg["data"]))
        cfg["downscale"] = resumed["config"]["downscale"]
    tr = Trainer(cfg)
    if resumed is not None:
        tr.restore(resumed)
    from tqdm import tqdm

    bar = tqdm(total=None if cfg["minutes"] and not cfg["steps"] else tr.total_steps, initial=tr.step,
               disable=not cfg["progress"], desc="train", unit="step", dynamic_ncols=True)
    last_curve = tr.train_seconds
    ema_loss = None
    with Interruptible() as stop:
        while not tr.done():
            t0 = time.perf_counter()
            loss, samples = tr.train_step()
            if tr.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            tr.train_seconds += dt
            ema_loss = loss if ema_loss is None else 0.9 * ema_loss + 0.1 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{ema_loss:.4f}", psnr=f"{mse_to_psnr(ema_loss):.2f}",
                            samples_s=f"{samples / max(dt, 1e-9):.3g}", rays=tr.rays)
            if cfg["curve_every_s"] and tr.train_seconds - last_curve >= cfg["curve_every_s"]:
                last_curve = tr.train_seconds
                ev = tr.evaluate(tr.test_scene, cfg["eval_views"])
                tr.curve.append((tr.train_seconds, tr.step, ev["psnr"]))
            if cfg["eval_every"] and tr.step % cfg["eval_every"] == 0:
                ev = tr.evaluate(tr.val_scene, cfg["eval_views"])
                bar.write(f"step {tr.step}: val PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f}")
            if on_step is not None:
                on_step(tr.step)
            if stop.requested and not tr.done():
                checkpoint.save(ckpt, tr.state())
                bar.close()
                raise Interrupted(tr.step, str(ckpt))
            if cfg["ckpt_every"] and tr.step % cfg["ckpt_every"] == 0:
                checkpoint.save(ckpt, tr.state())
    bar.close()
    checkpoint.save(ckpt, tr.state())
    ev = tr.evaluate(tr.test_scene, cfg["test_views"], out / "renders" if cfg["save_renders"] else None)
    result = {"psnr": ev["psnr"], "ssim": ev["ssim"], "test_views": ev["views"], "steps": tr.step,
              "train_seconds": tr.train_seconds, "curve": tr.curve, "psnr_per_view": ev["psnr_per_view"],
              "ssim_per_view": ev["ssim_per_view"], "checkpoint": str(ckpt), "data": tr.data_path,
              "preset": cfg["preset"], "hard_mining": cfg["hard_mining"]}
    atomic.write_json(out / "metrics.json", result)
    return result


def parser() -> cli.ArgumentParser:
    ap = cli.ArgumentParser(prog="python -m hero.train", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="procedural",
                    help="scene folder or transforms.json, or 'procedural' (default: the built-in scene)")
    ap.add_argument("--preset", default="cpu", choices=list(PRESETS))
    ap.add_argument("--out", default="runs/default")
    ap.add_argument("--downscale", type=cli.downscale, default=AUTO,
                    help="load images at 1/N resolution; auto (default): the longest side at most "
                         + ", ".join(f"{v} px for {k}" for k, v in MAX_SIDE.items()))
    ap.add_argument("--steps", type=cli.number(int, lo=1), default=None, help="training steps (default: the preset's)")
    ap.add_argument("--minutes", type=cli.number(float, lo=0, lo_open=True), default=None,
                    help="training time budget (excludes evaluation)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--eval-every", type=cli.number(int, lo=0), default=500,
                    help="steps between validation renders (0: off)")
    ap.add_argument("--ckpt-every", type=cli.number(int, lo=0), default=500, help="steps between checkpoints (0: off)")
    ap.add_argument("--test-views", type=cli.number(int, lo=1), default=None,
                    help="evaluate the first N test views (default all)")
    ap.add_argument("--hard-mining", action="store_true",
                    help="hard-sample mining: backward only on the hardest samples (or rays) of a batch")
    ap.add_argument("--hard-unit", choices=HARD_UNITS, default="samples",
                    help="hard mining selects samples (Korhonen et al., default) or whole rays")
    ap.add_argument("--hard-keep", type=cli.number(float, lo=0, hi=1, lo_open=True), default=0.25,
                    help="hard mining: share of the batch's samples that get a backward, in (0, 1]")
    ap.add_argument("--seed", type=cli.number(int, lo=0), default=0)
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    cfg = default_config(data=a.data, preset=a.preset, out=a.out, downscale=a.downscale, steps=a.steps,
                         minutes=a.minutes, device=a.device, eval_every=a.eval_every, ckpt_every=a.ckpt_every,
                         test_views=a.test_views, hard_mining=a.hard_mining, hard_unit=a.hard_unit,
                         hard_keep=a.hard_keep, seed=a.seed, progress=not a.no_progress)
    try:
        res = train(cfg)
    except KeyboardInterrupt as exc:  # hero.interrupt.Interrupted: the checkpoint is saved
        return cli.interrupted(exc)
    except ValueError as exc:  # DataError, CheckpointError, OutputError and bad settings
        return cli.refuse(str(exc))
    print(f"test PSNR {res['psnr']:.2f} dB  SSIM {res['ssim']:.4f}  ({res['test_views']} views, {res['steps']} steps, "
          f"{res['train_seconds'] / 60:.1f} min) -> {Path(a.out) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
