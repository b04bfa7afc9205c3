"""Training on the procedural scene with the tiny preset: learning, checkpoints, resume, CLI, hard mining."""

import json
import subprocess
import sys

import pytest
import torch

from hero import checkpoint
from hero.data import procedural
from hero.nerf.model import sh_encode
from hero.nerf.render import march, render_samples
from hero.train import Trainer, default_config, hard_sample_backward, train


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return procedural.build(tmp_path_factory.mktemp("proc"), size=32, n_train=16, n_val=2, n_test=2)


def cfg(scene_dir, out, **kw):
    c = {"data": str(scene_dir), "preset": "tiny", "out": str(out), "steps": 60, "ckpt_every": 25,
         "progress": False, "device": "cpu"}
    c.update(kw)
    return c


def test_train_learns_saves_and_resumes(scene_dir, tmp_path):
    out = tmp_path / "run"
    res = train(cfg(scene_dir, out, steps=120))
    assert res["steps"] == 120
    assert res["psnr"] > 15.0, res  # white background alone gives ~10 dB
    assert 0.0 < res["ssim"] <= 1.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["psnr"] == pytest.approx(res["psnr"])
    assert sorted(p.name for p in (out / "renders").iterdir()) == ["test_000.png", "test_001.png"]
    assert not list(out.glob("*.tmp"))
    model, meta = checkpoint.load(out / "checkpoint.pt")
    assert meta["step"] == 120
    occ = float(meta["occupancy"].bitfield.float().mean())
    assert 0.0 < occ < 0.9  # empty space was found
    assert [n for n, _, _ in model.quant_units()][-1] == "color.fc2"
    before = model.density.fc0.weight.clone()
    # same command again with more steps: resumes at 120 instead of starting over
    res2 = train(cfg(scene_dir, out, steps=130))
    assert res2["steps"] == 130
    model2, meta2 = checkpoint.load(out / "checkpoint.pt")
    assert meta2["step"] == 130
    assert not torch.equal(before, model2.density.fc0.weight)
    assert res2["psnr"] > res["psnr"] - 1.0


@pytest.mark.parametrize("unit", ["samples", "rays"])
def test_hard_mining_trains(scene_dir, tmp_path, unit):
    res = train(cfg(scene_dir, tmp_path / unit, steps=100, hard_mining=True, hard_unit=unit, save_renders=False))
    assert res["steps"] == 100 and res["hard_mining"] and res["psnr"] > 14.0, res


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_hard_sample_gradient_is_the_full_gradient_on_the_kept_samples(scene_dir, tmp_path):
    tr = Trainer(default_config(**cfg(scene_dir, tmp_path / "g")))
    for _ in range(30):
        tr.train_step()
    o, d, target, bg = tr.sample_rays(256)
    s = march(o, d, tr.grid, tr.dt, tr.mcfg["steps_per_ray"], jitter=False)
    assert len(s) > 1000
    loss = ((render_samples(tr.model, s, sh_encode(d), bg) - target) ** 2).mean()
    tr.opt.zero_grad()
    loss.backward()
    full = _grads(tr.model)
    tr.opt.zero_grad()
    mined_loss, n = hard_sample_backward(tr.model, s, sh_encode(d), target, bg, keep=1.0)
    assert n == len(s) and mined_loss == pytest.approx(float(loss.detach()), rel=1e-5)
    torch.testing.assert_close(_grads(tr.model), full, rtol=1e-4, atol=1e-7)
    tr.opt.zero_grad()
    _, n = hard_sample_backward(tr.model, s, sh_encode(d), target, bg, keep=0.25)
    part = _grads(tr.model)
    assert n == int(0.25 * len(s))
    # the kept quarter carries most of the gradient, but not all of it
    assert 0.5 < float(part @ full) / float(full @ full) < 1.0


def test_bad_hard_mining_settings_are_refused(scene_dir, tmp_path):
    with pytest.raises(ValueError, match="hard_unit"):
        Trainer(default_config(**cfg(scene_dir, tmp_path / "u", hard_unit="pixels")))
    with pytest.raises(ValueError, match="hard_keep"):
        Trainer(default_config(**cfg(scene_dir, tmp_path / "k", hard_keep=0.0)))
    r = subprocess.run([sys.executable, "-m", "hero.train", "--data", str(scene_dir), "--hard-mining",
                        "--hard-keep", "1.5"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--hard-keep 1.5" in r.stderr and "Traceback" not in r.stderr


def test_checkpoint_save_is_atomic(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"x": torch.ones(3)})
    checkpoint.save(path, {"x": torch.zeros(3)})
    assert torch.equal(checkpoint.load_state(path)["x"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_cli_trains_and_writes_metrics(scene_dir, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "hero.train", "--data", str(scene_dir), "--preset", "tiny", "--steps",
                        "12", "--out", str(out), "--device", "cpu", "--test-views", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "samples_s" in r.stderr and "psnr" in r.stderr  # progress bar
    assert json.loads((out / "metrics.json").read_text())["steps"] == 12
