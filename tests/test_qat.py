"""python -m hero.qat: fine-tuning through the fake-quant path, with resume and clear errors."""

import json
import subprocess
import sys

import pytest

from hero import checkpoint
from hero.qat import STATE, qat
from hero.quant.export import load_export
from hero.quant.policy import Policy, PolicyError


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
    with pytest.raises(PolicyError, match="another policy"):
        qat(tiny_ckpt, Policy.uniform(model, 3), tmp_path, steps=8, progress=False)
    with pytest.raises(PolicyError, match="another policy or mode"):
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
