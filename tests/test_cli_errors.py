"""Bad input a user would give, across the command lines: one clear line naming the file or flag, exit 2.

Each case runs the command in a subprocess (as a user would) and fails cheaply, before any training.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hero.data import procedural

ROOT = Path(__file__).resolve().parents[1]
#: hero.qat keeps argparse's own error() (usage block, then the error line).
USAGE_BLOCK = ("hero.qat",)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of broken inputs: scenes, checkpoints, policies, hardware files."""
    d = tmp_path_factory.mktemp("bad")
    scene = procedural.build(d / "scene", size=8, n_train=2, n_val=1, n_test=1)
    (d / "empty").mkdir()
    (d / "afile.txt").write_text("not a scene\n")
    (d / "out_file").write_text("an existing file\n")
    (d / "garbage_json").mkdir()
    (d / "garbage_json" / "transforms.json").write_text("{not json")
    shutil.copytree(scene, d / "angle_str")
    meta = json.loads((d / "angle_str" / "transforms_train.json").read_text())
    meta["camera_angle_x"] = "wide"
    (d / "angle_str" / "transforms_train.json").write_text(json.dumps(meta))
    shutil.copytree(scene, d / "no_frames")
    (d / "no_frames" / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": {}}))
    shutil.copytree(scene, d / "bad_image")
    (d / "bad_image" / "train" / "r_0.png").write_bytes(b"not a png")
    (d / "llff_text" / "images").mkdir(parents=True)
    np.savetxt(d / "llff_text" / "poses_bounds.npy", np.zeros((2, 17)))
    (d / "llff_nan" / "images").mkdir(parents=True)
    arr = np.zeros((2, 17))
    arr[:, 15:] = np.nan
    np.save(d / "llff_nan" / "poses_bounds.npy", arr)
    for i in range(2):
        Image.new("RGB", (8, 6)).save(d / "llff_nan" / "images" / f"{i}.png")
    (d / "ngp_fisheye").mkdir()
    Image.new("RGB", (8, 6)).save(d / "ngp_fisheye" / "a.png")
    (d / "ngp_fisheye" / "transforms.json").write_text(json.dumps(
        {"fl_x": 8, "w": 8, "h": 6, "camera_model": "EQUIRECTANGULAR",
         "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}))
    (d / "corrupt_out").mkdir()
    (d / "corrupt_out" / "checkpoint.pt").write_text("this is not a checkpoint\n")
    (d / "corrupt.pt").write_text("this is not a checkpoint\n")
    (d / "empty.pt").write_bytes(b"")
    (d / "policy_bad.json").write_text("{")
    (d / "policy_wrong.json").write_text(json.dumps({"format": "something-else"}))
    (d / "hw_bad.toml").write_text("clock_mhz = \n")
    (d / "hw_binary.toml").write_bytes(b"\xff\xfe\x00\x81")
    return d


TRAIN = ["hero.train", "--preset", "tiny", "--device", "cpu", "--no-progress", "--out", "{tmp}/run"]
SEARCH = ["hero.search", "--no-progress", "--out", "{tmp}/search"]
QAT = ["hero.qat", "--ckpt", "{ckpt}", "--policy", "uniform4", "--out", "{tmp}/qat", "--steps", "1", "--no-progress"]
CAQ = ["hero.caq", "--ckpt", "{ckpt}", "--out", "{tmp}/caq", "--steps", "1", "--calib-batches", "1", "--no-progress"]
REPORT = ["sim_py.report", "--ckpt", "{ckpt}", "--out", "{tmp}/report"]
GEN = ["rtl.gen"]

CASES = [
    # hero.train: the scene
    (TRAIN, ["--data", "{bad}/nothing"], "nothing: scene path does not exist"),
    (TRAIN, ["--data", "{bad}/afile.txt"], "afile.txt: is a file"),
    (TRAIN, ["--data", "{bad}/empty"], "empty: no scene found"),
    (TRAIN, ["--data", "{bad}/garbage_json"], "transforms.json: not valid JSON"),
    (TRAIN, ["--data", "{bad}/angle_str"], "transforms_train.json: 'camera_angle_x'"),
    (TRAIN, ["--data", "{bad}/no_frames"], "transforms_train.json: missing or empty 'frames' list"),
    (TRAIN, ["--data", "{bad}/bad_image"], "r_0.png: unreadable image"),
    (TRAIN, ["--data", "{bad}/llff_text"], "poses_bounds.npy: not a binary .npy file"),
    (TRAIN, ["--data", "{bad}/llff_nan"], "poses_bounds.npy: has non-finite entries"),
    (TRAIN, ["--data", "{bad}/ngp_fisheye"], "transforms.json: 'camera_model' EQUIRECTANGULAR"),
    # hero.train: numbers and folders
    (TRAIN, ["--data", "{bad}/scene", "--downscale", "0"], "--downscale"),
    (TRAIN, ["--data", "{bad}/scene", "--downscale", "-2"], "--downscale"),
    (TRAIN, ["--data", "{bad}/scene", "--downscale", "half"], "--downscale"),
    (TRAIN, ["--data", "{bad}/scene", "--downscale", "1000"], "--downscale 1000"),
    (TRAIN, ["--steps", "0"], "--steps"),
    (TRAIN, ["--steps", "-5"], "--steps"),
    (TRAIN, ["--minutes", "-1"], "--minutes"),
    (TRAIN, ["--minutes", "nan"], "--minutes"),
    (TRAIN, ["--test-views", "0"], "--test-views"),
    (TRAIN, ["--ckpt-every", "-1"], "--ckpt-every"),
    (TRAIN, ["--eval-every", "-1"], "--eval-every"),
    (TRAIN, ["--hard-mining", "--hard-keep", "1.5"], "--hard-keep 1.5"),
    (TRAIN, ["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (TRAIN, ["--data", "{bad}/scene", "--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
    (TRAIN, ["--data", "{bad}/scene", "--out", "{bad}/corrupt_out"], "checkpoint.pt: not a checkpoint"),
    # hero.search
    (SEARCH, ["--ckpt", "{bad}/corrupt.pt"], "corrupt.pt: not a checkpoint"),
    (SEARCH, ["--ckpt", "{bad}/empty.pt"], "empty.pt: not a checkpoint"),
    (SEARCH, ["--ckpt", "{bad}"], "is a folder"),
    (SEARCH, ["--hw-preset", "{bad}/hw_bad.toml"], "hw_bad.toml: not valid TOML"),
    (SEARCH, ["--hw-preset", "{bad}/hw_binary.toml"], "hw_binary.toml: not valid TOML"),
    (SEARCH, ["--hw-preset", "fastest"], "'fastest': no such file or preset"),
    (SEARCH, ["--latency-weight", "nan"], "--latency-weight"),
    (SEARCH, ["--episodes", "-3"], "--episodes -3"),
    (SEARCH, ["--train-minutes", "inf"], "--train-minutes"),
    (SEARCH, ["--downscale", "0"], "--downscale"),
    (SEARCH, ["--ckpt", "{ckpt}", "--downscale", "3"], "--downscale 3"),
    (SEARCH, ["--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
    # hero.qat and hero.caq
    (QAT, ["--ckpt", "{bad}/corrupt.pt"], "corrupt.pt: not a checkpoint"),
    (QAT, ["--policy", "{bad}/policy_bad.json"], "policy_bad.json: not valid JSON"),
    (QAT, ["--policy", "uniform9"], "--policy uniform9: uniform bits must be 2..8"),
    (QAT, ["--steps", "-1"], "--steps"),
    (QAT, ["--out", "{bad}/out_file"], "out_file"),
    (CAQ, ["--ckpt", "{bad}/empty.pt"], "empty.pt: not a checkpoint"),
    (CAQ, ["--rays", "0"], "--rays 0: out of range"),
    # sim_py.report
    (REPORT, ["--ckpt", "{bad}/corrupt.pt"], "corrupt.pt: not a checkpoint"),
    (REPORT, ["--hw", "{bad}/hw_binary.toml"], "hw_binary.toml: not valid TOML"),
    (REPORT, ["--policies", "uniform4,int8"], "'int8' is not a policy name"),
    (REPORT, ["--policies", "uniform99"], "uniform99"),
    (REPORT, ["--view", "-1"], "--view -1"),
    (REPORT, ["--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
    # rtl.gen
    (GEN, ["mlp-engine", "--rows", "0"], "--rows: rows must be an integer in 1..64, got 0"),
    (GEN, ["heu", "--log2t", "0"], "--log2t"),
    (GEN, ["heu", "--depth", "-1"], "--depth"),
    (GEN, ["mlp-engine", "-o", "{bad}/out_file"], "cannot write there"),
    (GEN, ["mlp-engine", "--name", "9lives"], "--name must be a Verilog identifier"),
]


def _argv(base, args, **subs):
    argv = list(base)
    for a in args:  # a flag given again replaces the base's value
        if a.startswith("-") and a in argv[1:] and argv.index(a) + 1 < len(argv):
            del argv[argv.index(a): argv.index(a) + 2]
    argv += args
    return [a.format(**subs) for a in argv]


@pytest.mark.parametrize("base, args, message", CASES,
                         ids=[f"{b[0]}:{' '.join(a)}".replace("{bad}/", "") for b, a, _ in CASES])
def test_bad_input_gets_one_clear_line(bad, tiny_ckpt, tmp_path, base, args, message):
    argv = _argv(base, args, bad=bad, ckpt=tiny_ckpt, tmp=tmp_path)
    res = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    if base[0] in USAGE_BLOCK and lines and lines[0].startswith("usage:"):
        lines = [line for line in lines if not line.startswith(("usage:", " "))]
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert len(lines) == 1, res.stderr
    assert message.format(bad=bad) in lines[0], lines[0]
