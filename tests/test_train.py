"""Training on the procedural scene with the tiny preset: learning, checkpoints, resume, CLI, hard mining."""

import json
import os
import signal
import stat
import subprocess
import sys

import pytest
import torch
from PIL import Image

from hero import atomic, checkpoint
from hero.data import procedural
from hero.interrupt import Interrupted
from hero.nerf.model import sh_encode
from hero.nerf.render import march, render_samples
from hero.train import Trainer, default_config, hard_sample_backward, train
from tests.conftest import ctrl_c_once_written


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
    occ = float(meta["render"].grid.bitfield.float().mean())
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
    assert r.returncode == 2 and "--hard-keep: 1.5 is out of range" in r.stderr and "Traceback" not in r.stderr


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


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_results_get_the_umasks_permissions(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic.write_json(tmp_path / "r" / "metrics.json", {"psnr": 1.0})
        checkpoint.save(tmp_path / "r" / "checkpoint.pt", {"x": torch.ones(2)})
        atomic.save_image(tmp_path / "r" / "a.png", Image.new("RGB", (2, 2)))
    finally:
        os.umask(old)
    for name in ("metrics.json", "checkpoint.pt", "a.png"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["a.png", "checkpoint.pt", "metrics.json"]


def test_auto_downscale_is_recorded_and_a_resume_must_match(tmp_path, capsys):
    scene = procedural.build(tmp_path / "big", size=256, n_train=2, n_val=1, n_test=1)
    out = tmp_path / "run"
    train(cfg(scene, out, steps=2, test_views=1, save_renders=False))  # tiny: the longest side at most 128
    assert "--downscale auto: 2, images 128x128 (256x256 / 2)" in capsys.readouterr().out
    _, meta = checkpoint.load(out / "checkpoint.pt")
    assert meta["config"]["downscale"] == 2 and meta["camera"]["width"] == 128
    with pytest.raises(ValueError, match=r"--downscale 4: .* was trained with --downscale 2"):
        train(cfg(scene, out, steps=3, downscale=4))
    with pytest.raises(ValueError, match=r"--preset cpu: .* was trained with --preset tiny"):
        train(cfg(scene, out, steps=3, preset="cpu"))
    with pytest.raises(ValueError, match=r"--data .*: .* was trained on .*big"):
        train(cfg(procedural.build(tmp_path / "other", size=16, n_train=2, n_val=1, n_test=1), out, steps=3))
    assert train(cfg(scene, out, steps=3, downscale=2, test_views=1, save_renders=False))["steps"] == 3


def test_ctrl_c_saves_the_step_it_stopped_at_and_the_rerun_resumes(scene_dir, tmp_path):
    def ctrl_c(step):
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    run = cfg(scene_dir, tmp_path, steps=12, ckpt_every=1000, test_views=1)  # no periodic checkpoint
    handler = signal.getsignal(signal.SIGINT)  # the default one, or SIG_IGN under nohup
    with pytest.raises(Interrupted, match=r"interrupted at step 7; state saved in .*checkpoint\.pt"):
        train(run, on_step=ctrl_c)
    assert checkpoint.load_state(tmp_path / "checkpoint.pt")["step"] == 7
    assert not (tmp_path / "metrics.json").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # the handler is given back
    steps = []
    assert train(run, on_step=steps.append)["steps"] == 12
    assert steps == [8, 9, 10, 11, 12]


def test_cli_ctrl_c_exits_130_with_one_line(scene_dir, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    step = ctrl_c_once_written(["hero.train", "--data", str(scene_dir), "--preset", "tiny", "--device", "cpu",
                                "--steps", "100000", "--ckpt-every", "1", "--no-progress", "--out", str(tmp_path)],
                               ckpt, "checkpoint.pt")
    assert step >= 1 and checkpoint.load_state(ckpt)["step"] == step


def test_a_checkpoint_works_from_any_folder(scene_dir, tmp_path, monkeypatch):
    """The scene's folder is recorded absolute; an old checkpoint's relative one is found from a folder above
    it; a scene that is gone is named in one clear error."""
    from hero.data import DataError
    from hero.quant.calib import checkpoint_scenes

    proj = tmp_path / "proj"
    (proj / "runs" / "data").mkdir(parents=True)
    data = procedural.build(proj / "runs" / "data" / "scene", size=16, n_train=2, n_val=1, n_test=1)
    monkeypatch.chdir(proj)
    train(cfg("runs/data/scene", "runs/a", steps=2))
    monkeypatch.chdir(tmp_path)
    _, meta = checkpoint.load(proj / "runs" / "a" / "checkpoint.pt")
    assert meta["render"].data == str(data) and meta["render"].downscale == 1
    assert len(checkpoint_scenes(meta)[2].c2w) == 1
    # a checkpoint from before: the path relative to the folder it was made in, opened from elsewhere
    st = checkpoint.load_state(proj / "runs" / "a" / "checkpoint.pt")
    checkpoint.save(proj / "runs" / "b" / "checkpoint.pt", {**st, "data": "runs/data/scene"})
    assert checkpoint.load(proj / "runs" / "b" / "checkpoint.pt")[1]["render"].data == str(data)
    checkpoint.save(tmp_path / "c.pt", {**st, "data": str(tmp_path / "gone")})
    with pytest.raises(DataError, match="gone.*the scene this checkpoint was trained on is not there"):
        checkpoint_scenes(checkpoint.load(tmp_path / "c.pt")[1])
    res = subprocess.run([sys.executable, "-m", "sim_py.report", "--ckpt", str(tmp_path / "c.pt"),
                          "--out", str(tmp_path / "rep")], capture_output=True, text=True)
    assert res.returncode == 2 and "not there" in res.stderr and "Traceback" not in res.stderr


def test_the_procedural_scene_is_built_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HERO_CACHE", str(tmp_path / "cache"))
    assert procedural.default_folder() == tmp_path / "cache" / "procedural"
    monkeypatch.delenv("HERO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert procedural.default_folder() == tmp_path / "xdg" / "hero" / "procedural"


def test_hard_samples_bench_reads_the_ratio_on_the_rising_part(capsys):
    """bench.hard_samples: the time ratio is read margin dB below the lower final PSNR, where both
    curves still rise, not at the baseline's final PSNR where they are flat."""
    from types import SimpleNamespace

    from bench.hard_samples import median, report_seed, time_to_reach

    base = {"curve": [(0.0, 0, 10.0), (10.0, 50, 20.0), (20.0, 100, 24.0), (30.0, 150, 24.1)],
            "saved_peak": 4 << 20, "rss_peak_kb": 1000, "steps": 150}
    hard = {"curve": [(0.0, 0, 10.0), (5.0, 40, 20.0), (10.0, 80, 23.5), (30.0, 240, 24.2)],
            "saved_peak": 1 << 20, "rss_peak_kb": 900, "steps": 240}
    a = SimpleNamespace(views=1, data="x", keep=0.25, unit="samples", margin=1.0)
    r = report_seed(a, 0, base, hard)
    assert r["target"] == pytest.approx(23.1)
    assert r["t_base"] == pytest.approx(time_to_reach(base["curve"], 23.1)) == pytest.approx(17.75)
    assert r["ratio"] == pytest.approx(time_to_reach(hard["curve"], 23.1) / 17.75)
    assert r["final_ratio"] == pytest.approx(time_to_reach(hard["curve"], 24.1) / 30.0) and r["mem"] == 0.25
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([1.0, 2.0]) == 1.5
    assert "both reach 23.10 dB" in capsys.readouterr().out
