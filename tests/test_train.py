"""Training on the procedural scene with the tiny preset: learning, checkpoints, resume, CLI, hard mining."""

import json
import subprocess
import sys

import pytest
import torch

from hero import checkpoint
from hero.data import procedural
from hero.train import train


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


def test_hard_mining_trains(scene_dir, tmp_path):
    res = train(cfg(scene_dir, tmp_path / "hard", steps=100, hard_mining=True, save_renders=False))
    assert res["steps"] == 100 and res["hard_mining"] and res["psnr"] > 14.0, res


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
