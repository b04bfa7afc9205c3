"""python -m hero.qat: fine-tuning through the fake-quant path, with resume and clear errors."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from hero import checkpoint
from hero.checkpoint import CheckpointError
from hero.nerf.evaluate import evaluate_views
from hero.nerf.presets import preset
from hero.qat import STATE, qat
from hero.quant.calib import calibrated_ranges, checkpoint_scenes
from hero.quant.export import load_export
from hero.quant.heldout import held_out_rays, rays_psnr
from hero.quant.policy import Policy
from hero.quant.qnerf import FakeQuantField, QuantizedNeRF
from hero.train import default_config, train
from tests.conftest import TINY_MODEL, ctrl_c_once_written


def test_qat_writes_results_and_resumes(tiny_ckpt, tmp_path):
    model, _ = checkpoint.load(tiny_ckpt)
    policy = Policy.uniform(model, 4)
    res = qat(tiny_ckpt, policy, tmp_path, steps=4, rays=256, ckpt_every=2, test_views=1, progress=False)
    assert res["steps"] == 4 and res["psnr"] > 5 and 0 < res["ssim"] <= 1
    assert res["compression"] > 7.5  # 4-bit everything: about 8x smaller than FP32
    assert res["best_step"] in (0, 2, 4) and res["val_psnr"] >= res["val_psnr_ptq"]
    assert json.loads((tmp_path / "metrics.json").read_text())["psnr"] == res["psnr"]
    assert load_export(tmp_path / "model.npz").layers[0].bits == 4
    assert (tmp_path / "renders" / "test_000.png").exists()
    assert checkpoint.load_state(tmp_path / STATE)["step"] == 4
    # Resume: the state carries on from step 4 to 6 (the saved weights are the fine-tuned ones).
    res2 = qat(tiny_ckpt, policy, tmp_path, steps=6, rays=256, ckpt_every=2, test_views=1, progress=False)
    assert res2["steps"] == 6 and checkpoint.load_state(tmp_path / STATE)["step"] == 6
    with pytest.raises(CheckpointError, match=r"holds a QAT state with other settings \(.*policy"):
        qat(tiny_ckpt, Policy.uniform(model, 3), tmp_path, steps=8, progress=False)
    with pytest.raises(CheckpointError, match=r"holds a QAT state with other settings \(.*rounding"):
        qat(tiny_ckpt, policy, tmp_path, steps=8, progress=False, rounding="nearest")
    assert json.loads((tmp_path / "metrics.json").read_text())["rounding"] == "gptq"


@pytest.mark.parametrize("args, message", [
    (["--policy", "uniform9"], "uniform bits must be 2..8"),
    (["--policy", "missing.json"], "missing.json: no such file"),
    (["--ckpt", "nope.pt"], "--ckpt nope.pt: no such file"),
    (["--rounding", "up"], "argument --rounding: invalid choice: 'up'"),
])
def test_qat_cli_errors(tiny_ckpt, tmp_path, args, message):
    argv = ["--ckpt", tiny_ckpt, "--policy", "uniform4", "--out", str(tmp_path)]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    res = subprocess.run([sys.executable, "-m", "hero.qat", *argv, "--steps", "1"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    """The tiny model trained long enough (300 steps, about 19 dB) that a wild learning rate makes it worse
    (the shared 40-step one is so far from converged that any fine-tuning improves it)."""
    out = tmp_path_factory.mktemp("trained_ckpt")
    return train(default_config(preset="tiny", model=preset("tiny", **TINY_MODEL), out=str(out), steps=300,
                                progress=False, save_renders=False, test_views=1))["checkpoint"]


def test_qat_selection_never_worse_than_ptq_on_held_out_rays(trained_ckpt, tmp_path):
    """The model QAT keeps is never worse than the PTQ model on the held-out rays, re-scored here: with a
    learning rate that wrecks every fine-tuned checkpoint, the selection hands back step 0 (PTQ)."""
    model, meta = checkpoint.load(trained_ckpt)
    policy = Policy.uniform(model, 3)
    train_scene, val_scene, test_scene = checkpoint_scenes(meta)
    rays = held_out_rays(val_scene, 1024, seed=0)
    ranges = calibrated_ranges(model, meta, train_scene, 0)
    args = (meta["render"].grid, rays, meta["render"].dt, meta["render"].max_steps, meta["render"].background)

    def held_out_psnr(m, r=ranges) -> float:
        return rays_psnr(FakeQuantField(QuantizedNeRF(m, policy, r)), *args)

    ptq = held_out_psnr(model)
    for lr, sub in ((1e-3, "gentle"), (1.0, "wild")):
        res = qat(trained_ckpt, policy, tmp_path / sub, steps=4, lr=lr, rays=256, ckpt_every=2, held_out=1024,
                  test_views=1, progress=False)
        assert res["val_psnr_ptq"] == pytest.approx(ptq, abs=1e-9)
        assert res["val_psnr"] >= ptq and [h["step"] for h in res["history"]] == [0, 2, 4]
        best = checkpoint.load_state(tmp_path / sub / STATE)["best"]
        kept, _ = checkpoint.load(trained_ckpt)  # the weights and activation ranges it kept, scored independently
        kept.load_state_dict(best["model"])
        psnr = held_out_psnr(kept, replace(ranges, **best["ranges"]))
        assert psnr == pytest.approx(res["val_psnr"], abs=1e-9) and psnr >= ptq
    # lr 1: every fine-tuned checkpoint is worse than PTQ, so step 0 is what comes back, test PSNR included
    assert all(h["val_psnr"] < ptq for h in res["history"][1:]) and res["best_step"] == 0
    ptq_test = evaluate_views(FakeQuantField(QuantizedNeRF(model, policy, ranges)), meta["render"].grid, test_scene,
                              meta["render"].dt, meta["render"].max_steps, meta["render"].background, 1)["psnr"]
    assert res["psnr"] == pytest.approx(ptq_test, abs=1e-6)
    # The state is keyed on every setting but the length: another learning rate is refused.
    with pytest.raises(CheckpointError, match=r"holds a QAT state with other settings \(.*lr"):
        qat(trained_ckpt, policy, tmp_path / "wild", steps=6, lr=0.5, rays=256, ckpt_every=2, held_out=1024,
            progress=False)


def test_qat_ctrl_c_saves_the_step_it_stopped_at_and_exits_130(tiny_ckpt, tmp_path):
    """A real SIGINT: the step in progress finishes, the state is saved, one line, exit 130; the rerun
    resumes from that step."""
    out = tmp_path / "qat"
    step = ctrl_c_once_written(["hero.qat", "--ckpt", str(tiny_ckpt), "--policy", "uniform4", "--out", str(out),
                                "--steps", "100000", "--rays", "256", "--held-out-rays", "256", "--no-progress"],
                               out / STATE, STATE)
    assert step >= 50 and checkpoint.load_state(out / STATE)["step"] == step
