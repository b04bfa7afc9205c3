"""The catalogue of bad input a user can give, across the command lines and the input file formats: every
case is answered with one BadInput (hero.cli) naming the file or flag, what is wrong and what would be right,
and on the command line with one error line and exit status 2.

- CASES run the command in a subprocess, as a user would (each costs seconds: keep them few);
- FILE_CASES call a loader in-process on a broken file: scene JSON (Blender, instant-ngp), LLFF
  poses_bounds.npy, policy JSON, hardware TOML, checkpoints and run states;
- FLAG_CASES and RESUME_CASES call a command's main() in-process: every numeric flag out of range or not
  finite, and a broken or foreign state in an --out being resumed; each fails before any training.

test_catalogue_size keeps the count (CATALOGUE).
"""

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hero import checkpoint, cli
from hero.data import load_scene, procedural
from hero.quant.policy import load_policy
from sim_py.hw import PRESETS_DIR, load_hardware

ROOT = Path(__file__).resolve().parents[1]


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
SWEEP = ["hero.sweep", "{bad}/none.toml"]
FPGA = ["rtl.fpga"]
DIAGRAM = ["rtl.diagram", "-o", "{tmp}/core.png"]
CALIBRATE = ["sim_py.calibrate", "--out", "{tmp}/calibration.json"]
# the benches (python -m bench.NAME): each refuses its bad flags and input files before any work
CYCLE_MODEL = ["bench.cycle_model"]
HARD_SAMPLES = ["bench.hard_samples"]
STEP_TIME = ["bench.step_time"]
HASHGRID = ["bench.hashgrid"]
HERO_VS_CAQ = ["bench.hero_vs_caq", "--lego-ckpt", "{ckpt}", "--procedural-ckpt", "{ckpt}", "--out", "{tmp}/hvc"]
HEU = ["bench.heu"]
MLP_ENGINE = ["bench.mlp_engine"]
QUANT = ["bench.quant", "--ckpt", "{ckpt}", "--out", "{tmp}/quant"]
QUANT_SCALES = ["bench.quant_scales", "--ckpt", "{ckpt}"]
SEARCH_LEGO = ["bench.search_lego", "--ckpt", "{ckpt}", "--out", "{tmp}/sl"]
SEARCH_METHODS = ["bench.search_methods", "--lego-ckpt", "{ckpt}", "--procedural-ckpt", "{ckpt}", "--out", "{tmp}/sm"]
TRAIN_FERN = ["bench.train_fern", "--out", "{tmp}/fern"]
TRAIN_LEGO = ["bench.train_lego", "--out", "{tmp}/lego"]

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
    (TRAIN, ["--hard-mining", "--hard-keep", "1.5"], "--hard-keep: 1.5 is out of range; expected a number > 0"),
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
    (SEARCH, ["--episodes", "-3"], "argument --episodes: -3 is out of range; expected an integer >= 1"),
    (SEARCH, ["--train-minutes", "inf"], "--train-minutes"),
    (SEARCH, ["--downscale", "0"], "--downscale"),
    (SEARCH, ["--ckpt", "{ckpt}", "--downscale", "3"], "--downscale 3"),
    (SEARCH, ["--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
    # hero.qat and hero.caq
    (QAT, ["--ckpt", "{bad}/corrupt.pt"], "corrupt.pt: not a checkpoint"),
    (QAT, ["--policy", "{bad}/policy_bad.json"], "policy_bad.json: not valid JSON"),
    (QAT, ["--policy", "uniform9"], "--policy uniform9: uniform bits must be 2..8"),
    (QAT, ["--steps", "-1"], "--steps"),
    (QAT, ["--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
    (QAT, ["--policy", "{bad}"], "is a folder, expected a policy JSON file"),
    (CAQ, ["--ckpt", "{bad}/empty.pt"], "empty.pt: not a checkpoint"),
    (CAQ, ["--rays", "0"], "--rays: 0 is out of range; expected an integer >= 1"),
    # sim_py.report
    (REPORT, ["--ckpt", "{bad}/corrupt.pt"], "corrupt.pt: not a checkpoint"),
    (REPORT, ["--hw", "{bad}/hw_binary.toml"], "hw_binary.toml: not valid TOML"),
    (REPORT, ["--policies", "uniform4,int8"], "'int8' is not a policy name"),
    (REPORT, ["--policies", "uniform99"], "uniform99"),
    (REPORT, ["--view", "-1"], "--view: -1 is out of range; expected an integer >= 0"),
    (REPORT, ["--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
    # rtl.gen
    (GEN, ["mlp-engine", "--rows", "0"], "--rows: rows must be an integer in 1..64, got 0"),
    (GEN, ["heu", "--log2t", "0"], "--log2t"),
    (GEN, ["heu", "--depth", "-1"], "--depth"),
    (GEN, ["mlp-engine", "-o", "{bad}/out_file"], "cannot write there"),
    (GEN, ["mlp-engine", "--name", "9lives"], "--name must be a Verilog identifier"),
    # hero.sweep, rtl.fpga, rtl.diagram, sim_py.calibrate
    (SWEEP, [], "none.toml: no such file (expected a sweep TOML file)"),
    (FPGA, ["core", "--depth", "-1"], "--depth: depth must be an integer in 2..16777216, got -1"),
    (FPGA, ["mlp-engine", "--device", "12k"], "argument --device: invalid choice: '12k'"),
    (DIAGRAM, ["--rows", "0"], "--rows: rows must be an integer in 1..64, got 0"),
    (CALIBRATE, ["--out", "{bad}"], "--out {bad}: is a folder, expected a JSON file name"),
    # the benches
    (HARD_SAMPLES, ["--seeds", "0"], "argument --seeds: 0 is out of range; expected an integer >= 1"),
    (TRAIN_FERN, ["--minutes", "-1"], "argument --minutes: -1 is out of range; expected a number > 0"),
    (TRAIN_FERN, ["--downscale", "0"], "argument --downscale: '0': expected 'auto' or an integer >= 1"),
    (TRAIN_LEGO, ["--downscale", "half"], "argument --downscale: 'half': expected 'auto' or an integer >= 1"),
    (QUANT, ["--ckpt", "{bad}/nothing.pt"], "--ckpt {bad}/nothing.pt: no such file (train one with `python -m "
                                            "bench.train_lego`)"),
    (CYCLE_MODEL, ["--ckpt", "{bad}/corrupt.pt"], "--ckpt {bad}/corrupt.pt: not a checkpoint"),
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
    assert_one_line(res.returncode, res.stderr, message.format(bad=bad))
    assert not list(tmp_path.iterdir()), "a refused run left its --out behind"


def assert_one_line(status: int, stderr: str, message: str) -> None:
    """Exit status 2, no traceback, one non-empty line on stderr, holding `message`."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == cli.BAD_INPUT, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1, stderr
    assert message in lines[0], lines[0]


# -- input files, in-process ------------------------------------------------------------------------------
# A case is (format, change, message): `change` turns the format's good file into the bad one. It gets the
# parsed contents (a dict for JSON, an array for LLFF, TOML text) and returns the new contents (bytes are
# written as they are); or, for the "scene" and "llff_scene" formats, it gets the scene folder and breaks it in
# place. test_the_good_files_load checks that each format's unchanged input loads.


def put(**kv):
    return lambda d: {**d, **kv}


def drop(*keys):
    return lambda d: {k: v for k, v in d.items() if k not in keys}


def frame(i, **kv):
    return lambda d: {**d, "frames": [{**f, **kv} if j == i else f for j, f in enumerate(d["frames"])]}


def section(name, **kv):
    return lambda d: {**d, name: {**d[name], **kv}}


def const(value):
    return lambda _: value


def toml_set(key, value):
    return lambda text: re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)


def toml_drop(key):
    return lambda text: re.sub(rf"(?m)^{key} = .*$", "", text)


def column(col, value, row=slice(None)):
    def change(a):
        a = a.copy()
        a[row, col] = value
        return a
    return change


def unlink(name):
    return lambda folder: (folder / name).unlink()


def mkdir_over(name):
    def change(folder):
        (folder / name).unlink()
        (folder / name).mkdir()
    return change


def text(data: str):
    return const(data.encode())


BINARY = const(b"\xff\xfe\x00\x81\x93garbage")
ROTATION_ZERO = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]

BLENDER = [  # transforms_train.json of a NeRF-synthetic scene
    (put(camera_angle_x="wide"), "'camera_angle_x' is \"wide\", expected a positive number below 3.14159"),
    (drop("camera_angle_x"), "missing 'camera_angle_x'"),
    (put(camera_angle_x=0), "'camera_angle_x' is 0, expected a positive number"),
    (put(camera_angle_x=-0.7), "'camera_angle_x' is -0.7, expected a positive number"),
    (put(camera_angle_x=float("nan")), "'camera_angle_x' is NaN, expected a positive number"),
    (put(camera_angle_x=3.5), "'camera_angle_x' is 3.5, expected a positive number below 3.14159"),
    (put(camera_angle_x=True), "'camera_angle_x' is true, expected a positive number"),
    (const([1, 2]), "expected a JSON object at the top level"),
    (BINARY, "transforms_train.json: not valid JSON (not UTF-8 text)"),
    (text(""), "transforms_train.json: not valid JSON"),
    (drop("frames"), "missing or empty 'frames' list"),
    (put(frames=[]), "missing or empty 'frames' list"),
    (put(frames=[5]), "frame 0 lacks 'file_path' or 'transform_matrix'"),
    (lambda d: {**d, "frames": [d["frames"][0], {"file_path": "./train/r_1"}]},
     "frame 1 lacks 'file_path' or 'transform_matrix'"),
    (frame(0, file_path=5), "frame 0: 'file_path' is 5, expected a path"),
    (frame(0, file_path=""), "frame 0: 'file_path' is \"\", expected a path"),
    (frame(1, transform_matrix=[["1", 0, 0, 0]] * 4), "frame 1 (./train/r_1): pose matrix is not numeric"),
    (frame(1, transform_matrix=None), "pose matrix is not numeric (null)"),
    (frame(1, transform_matrix=[[True, 0, 0, 0]] * 4), "pose matrix is not numeric"),
    (frame(0, transform_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]), "pose matrix has shape [3, 3], expected 4x4"),
    (frame(0, transform_matrix=[[1, 0, 0, 0], [0, 1, 0], [0, 0, 1, 0]]), "pose matrix has 3 rows of [3, 4] numbers"),
    (frame(0, transform_matrix=[[float("inf"), 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]), "non-finite entries"),
    (frame(0, transform_matrix=ROTATION_ZERO), "frame 0 (./train/r_0): the pose's 3x3 rotation part is singular"),
    (frame(1, file_path="./train/nothing"), "nothing.png: image file is missing"),
    (put(is_fisheye="yes"), "'is_fisheye' is \"yes\", expected true or false"),
    (put(k2=float("nan")), "'k2' is NaN, expected a finite number"),
]

SCENE = [  # the Blender scene's folder
    (unlink("transforms_test.json"), "transforms_test.json: no such file (expected a JSON file)"),
    (mkdir_over("transforms_test.json"), "transforms_test.json: is a folder, expected a JSON file"),
    (lambda f: (f / "test" / "r_0.png").write_bytes(b""), "r_0.png: unreadable image"),
    (lambda f: Image.new("RGBA", (5, 8)).save(f / "train" / "r_1.png"), "r_1.png: image is 5x8 but r_0.png is 8x8"),
]

FRAMES = [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()},
          {"file_path": "b.png", "transform_matrix": np.eye(4).tolist()}]
NGP_GOOD = {"fl_x": 8.0, "fl_y": 8.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "aabb_scale": 2, "frames": FRAMES}

NGP = [  # an instant-ngp transforms.json
    (put(fl_x="8"), "'fl_x' is \"8\", expected a positive number"),
    (put(fl_x=-8.0), "'fl_x' is -8.0, expected a positive number"),
    (put(fl_y=0), "'fl_y' is 0, expected a positive number"),
    (drop("fl_x", "fl_y"), "no focal length (expected 'fl_x' or 'camera_angle_x')"),
    (lambda d: {**drop("fl_x", "fl_y")(d), "x_fov": 60}, "'x_fov'/'y_fov' (degrees) are not read here"),
    (lambda d: {**drop("fl_x", "fl_y")(d), "camera_angle_x": 4.0}, "'camera_angle_x' is 4.0, expected a positive"),
    (put(cx=20.0), "'cx' is 20, outside the 8x6 image; expected a principal point in 0..8"),
    (put(cy=-1.0), "'cy' is -1, outside the 8x6 image"),
    (put(cy="3"), "'cy' is \"3\", expected a finite number"),
    (put(w=8.5), "'w' is 8.5, expected a positive integer"),
    (put(h=-6), "'h' is -6, expected a positive integer"),
    (put(w=16), "b.png: image is 8x6 but transforms.json says 16x6"),
    (put(aabb_scale=0), "'aabb_scale' is 0, expected a positive number"),
    (put(scale="big"), "'scale' is \"big\", expected a positive number"),
    (put(offset=[0.5, 0.5]), "'offset' is [0.5, 0.5], expected 3 numbers"),
    (put(offset=["a", 0.5, 0.5]), "'offset' is \"a\", expected a finite number"),
    (frame(0, file_path=None), "frame 0: 'file_path' is null, expected a path"),
    (put(frames=[{**f, "file_path": "gone.png"} for f in FRAMES]), "no frame has an existing image file"),
    (frame(1, fl_x=9.0), "frame 1 has its own camera ('fl_x' 9.0 against 8.0 in frame 0)"),
    (frame(1, transform_matrix=np.eye(4)[:2].tolist()), "frame 1 (b.png): pose matrix has shape [2, 4]"),
    (put(camera_model="OPENCV", is_fisheye=True), "'camera_model' OPENCV contradicts 'is_fisheye' true"),
    (const(b'"just a string"'), "expected a JSON object at the top level"),
]


def llff_good(n: int = 2) -> np.ndarray:
    m = np.zeros((n, 3, 5))
    m[:, :3, :3] = [[0, 1, 0], [1, 0, 0], [0, 0, -1.0]]  # [down, right, back]
    m[:, 0, 3] = np.arange(n) * 0.1
    m[:, :, 4] = [6, 8, 7.0]  # h, w, focal
    return np.concatenate([m.reshape(n, 15), np.tile([2.0, 10.0], (n, 1))], 1)


def npz(a):
    buf = io.BytesIO()
    np.savez(buf, poses=a)
    return buf.getvalue()


def npy_bytes(a, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


LLFF = [  # poses_bounds.npy (two images of 8x6 in images/)
    (lambda a: a[:, :15], "pose matrix has shape [2, 15], expected [N, 17]"),
    (lambda a: a.reshape(-1), "pose matrix has shape [34], expected [N, 17]"),
    (lambda a: a[:0], "pose matrix has shape [0, 17], expected [N, 17]"),
    (lambda a: a.astype(str), "holds <U32 values, expected real numbers"),
    (lambda a: a.astype(complex), "holds complex128 values, expected real numbers"),
    (lambda a: a > 0, "holds bool values, expected real numbers"),
    (lambda a: npy_bytes(np.array([{"pose": 1}], dtype=object), allow_pickle=True), "holds Python objects"),
    (lambda a: " ".join(map(str, a.reshape(-1))).encode(), "not a binary .npy file"),
    (lambda a: npy_bytes(a)[:-40], "truncated or corrupt .npy file"),
    (const(b""), "poses_bounds.npy: is empty; expected an array of shape [N, 17]"),
    (lambda a: npz(a), "holds an .npz archive, expected one array"),
    (column(3, np.inf), "has non-finite entries (NaN or inf)"),
    (column(15, 0.0), "has a near/far bound <= 0"),
    (column(16, 1.0, row=1), "row 1: near bound 2 is not below far bound 1"),
    (column(14, -7.0), "has an image height, width or focal length <= 0"),
    (column([0, 1, 2, 5, 6, 7, 10, 11, 12], 0.0, row=0), "row 0: the pose's 3x3 rotation part is singular"),
    (column([4, 9], [8.0, 6.0]), "a.png: image is 8x6 but poses_bounds.npy says 6x8"),
    (lambda a: np.concatenate([a, a[:1]]), "images: has 2 images but poses_bounds.npy has 3 poses"),
]
LLFF_SCENE = [  # the LLFF scene's folder
    (lambda f: (f / "images").rename(f / "photos"), "images: image folder is missing (expected images/ or images_1/"),
]

POLICY = [  # a policy JSON file for the tiny model
    (BINARY, "policy.json: not valid JSON (not UTF-8 text)"),
    (text(""), "not valid JSON"),
    (const([8, 8]), "expected a JSON object, got list"),
    (put(format="hero-policy/9"), "format 'hero-policy/9' is not 'hero-policy/1'"),
    (put(extra={}), "unknown section(s) extra; a policy has format, tables, weights and activations"),
    (drop("tables"), "section 'tables' is missing; expected an object of unit name -> bits (2..8)"),
    (put(weights=[8, 8]), "section 'weights' is [8, 8]; expected an object"),
    (put(activations=8), "section 'activations' is 8; expected an object"),
    (section("tables", **{"grid.level01": "4"}), "tables.grid.level01 must be an integer in 2..8, got '4'"),
    (section("weights", **{"color.fc0": 4.0}), "weights.color.fc0 must be an integer in 2..8, got 4.0"),
    (section("weights", **{"color.fc0": True}), "weights.color.fc0 must be an integer in 2..8, got True"),
    (section("tables", **{"grid.level00": 9}), "tables.grid.level00 must be an integer in 2..8, got 9"),
    (section("activations", **{"color.fc1": 1}), "activations.color.fc1 must be an integer in 2..8, got 1"),
    (section("weights", **{"density.fc7": 4}), "weights names unknown unit(s) density.fc7; the model's are"),
    (lambda d: {**d, "tables": drop("grid.level01")(d["tables"])}, "tables has no entry for grid.level01 (every"),
    (section("activations", **{"density.fc0": 4}), "activations.density.fc0 is the hash encoding unit's s8 output"),
]

HARDWARE = [  # a hardware TOML file (the fpga_ecp5 preset, changed)
    (BINARY, "not valid TOML (not UTF-8 text)"),
    (const("clock_mhz = \n"), "not valid TOML (Invalid value"),
    (const(""), "missing key(s) cache_kib, cache_line_bytes"),
    (lambda t: t + "\npe_rowz = 8\n", "unknown key(s) pe_rowz; the keys are name, sources, clock_mhz"),
    (toml_drop("cache_ways"), "missing key(s) cache_ways"),
    (toml_set("clock_mhz", '"80"'), "clock_mhz must be a number in 1.0..10000.0, got '80'"),
    (toml_set("clock_mhz", "0.0"), "clock_mhz must be a number in 1.0..10000.0, got 0.0"),
    (toml_set("clock_mhz", "-80.0"), "clock_mhz must be a number in 1.0..10000.0, got -80.0"),
    (toml_set("clock_mhz", "nan"), "clock_mhz must be a number in 1.0..10000.0, got nan"),
    (toml_set("dram_gbytes_per_s", "inf"), "dram_gbytes_per_s must be a number in 0.001..10000.0, got inf"),
    (toml_set("dram_latency_ns", "-1.0"), "dram_latency_ns must be a number in 0.0..100000.0, got -1.0"),
    (toml_set("table_sram_kib", "-inf"), "table_sram_kib must be a number in 0.0..1048576, got -inf"),
    (toml_set("pe_rows", "8.5"), "pe_rows must be an integer in 1..64, got 8.5"),
    (toml_set("pe_rows", "true"), "pe_rows must be an integer in 1..64, got True"),
    (toml_set("pe_cols", "0"), "pe_cols must be an integer in 1..64, got 0"),
    (toml_set("heu_banks", "3"), "heu_banks must be an integer in 1..64 and a power of two, got 3"),
    (toml_set("cache_ways", "[4]"), "cache_ways must be an integer in 1..64 and a power of two, got [4]"),
    (toml_set("name", "5"), "name must be a string, got 5"),
    (toml_set("cache_kib", "0.1"), "cache_kib 0.1 is smaller than one set of cache_ways x cache_line_bytes = 256"),
]


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def train_state(change):
    """A change of the tiny checkpoint's saved dict."""
    return lambda st: _torch_bytes(change(st))


CHECKPOINT = [  # a checkpoint of python -m hero.train (the tiny one), given as --ckpt
    (text("this is not a checkpoint\n"), "not a checkpoint (or saved run state), or a truncated one"),
    (const(b""), "or a truncated one (empty file); delete a broken one to start that run over"),
    (lambda st: _torch_bytes(st)[:2000], "or a truncated one"),
    (lambda st: npy_bytes(np.zeros(3)), "not a checkpoint (or saved run state)"),
    (const(_torch_bytes([1, 2, 3])), "not a checkpoint (holds a list, not a dict)"),
    (const(_torch_bytes({"model": {}, "optimizer": {}, "step": 3, "ranges": {}, "key": {}})),
     "not a checkpoint of python -m hero.train (it is a QAT state (qat_state.pt)); give the checkpoint.pt"),
    (const(_torch_bytes({"agent": {}, "rows": [], "episode": 2})), "(it is a search state (search_state.pt))"),
    (const(_torch_bytes({"field": {}, "settings": {}, "step": 1})), "(it is a CAQ state (caq_state.pt))"),
    (const(_torch_bytes({"step": 1})), "not a checkpoint of python -m hero.train (no 'model', 'occupancy'"),
    (train_state(lambda st: {**st, "dt": "small"}), "its model or render settings do not load (ValueError"),
    (train_state(lambda st: {**st, "config": {**st["config"], "model": {**st["config"]["model"], "hidden": 8}}}),
     "its model or render settings do not load (RuntimeError"),
    (train_state(lambda st: {**st, "config": "tiny"}), "a damaged checkpoint: its 'config' is a str, expected a dict"),
    (train_state(lambda st: {**st, "data": 5}), "a damaged checkpoint: its 'data' is an int, expected a str"),
    (train_state(lambda st: {**st, "aabb": "box"}), "its model or render settings do not load"),
]

FORMATS = {"blender": BLENDER, "scene": SCENE, "ngp": NGP, "llff": LLFF, "llff_scene": LLFF_SCENE, "policy": POLICY,
           "hardware": HARDWARE, "checkpoint": CHECKPOINT}
FILE_CASES = [(fmt, change, message) for fmt, cases in FORMATS.items() for change, message in cases]
#: the file each format's case breaks (None: the folder)
FILE_OF = {"blender": "transforms_train.json", "scene": None, "ngp": "transforms.json", "llff": "poses_bounds.npy",
           "llff_scene": None,
           "policy": "policy.json", "hardware": "hw.toml", "checkpoint": "checkpoint.pt"}


@pytest.fixture(scope="module")
def model(tiny_ckpt):
    return checkpoint.load(tiny_ckpt)[0]


def good_file(fmt: str, folder: Path, model, tiny_ckpt):
    """Write the good input of `fmt` into `folder`; return (its parsed contents, the loader)."""
    if fmt in ("blender", "scene"):
        shutil.copytree(procedural.build(folder.parent / "procedural", size=8, n_train=2, n_val=1, n_test=1), folder,
                        dirs_exist_ok=True)
        splits = ("train",) if fmt == "blender" else ("train", "val", "test")
        return json.loads((folder / FILE_OF["blender"]).read_text()), lambda: [load_scene(folder, s) for s in splits]
    if fmt in ("ngp", "llff", "llff_scene"):
        if fmt == "llff_scene":
            np.save(folder / FILE_OF["llff"], llff_good())
        images = folder / ("images" if fmt.startswith("llff") else "")
        images.mkdir(parents=True, exist_ok=True)
        for name in ("a.png", "b.png"):
            Image.new("RGB", (8, 6), (90, 20, 200)).save(images / name)
        return (NGP_GOOD if fmt == "ngp" else llff_good()), lambda: load_scene(folder, "train")
    if fmt == "policy":
        from hero.quant.policy import Policy

        return Policy.uniform(model, 8).to_dict(), lambda: load_policy(folder / FILE_OF[fmt], model)
    if fmt == "hardware":
        return (PRESETS_DIR / "fpga_ecp5.toml").read_text(), lambda: load_hardware(folder / FILE_OF[fmt])
    return checkpoint.load_state(tiny_ckpt), lambda: checkpoint.load(folder / FILE_OF[fmt])


def write_bad(fmt: str, folder: Path, good, change) -> Path:
    if FILE_OF[fmt] is None:
        change(folder)
        return folder
    bad = change(good)
    path = folder / FILE_OF[fmt]
    if fmt == "checkpoint" and isinstance(bad, dict):
        bad = _torch_bytes(bad)
    if isinstance(bad, bytes):
        path.write_bytes(bad)
    elif isinstance(bad, np.ndarray):
        np.save(path, bad)
    elif isinstance(bad, str):
        path.write_text(bad)
    else:
        path.write_text(json.dumps(bad))
    return path


def case_id(*words: str) -> str:
    return re.sub(r"[^\w.,=+-]+", "_", ":".join(words))[:70]


@pytest.mark.filterwarnings("ignore:.*skipping .* whose image is missing")
@pytest.mark.parametrize("fmt, change, message", FILE_CASES, ids=[case_id(f, m) for f, _, m in FILE_CASES])
def test_bad_file_is_refused_naming_it(tmp_path, model, tiny_ckpt, fmt, change, message):
    folder = tmp_path / "input"
    folder.mkdir()
    good, load = good_file(fmt, folder, model, tiny_ckpt)
    path = write_bad(fmt, folder, good, change)
    with pytest.raises(cli.BadInput) as e:
        load()
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    if fmt in ("blender", "ngp", "llff", "llff_scene"):  # names the file, or the image of it that is wrong
        assert str(e.value).startswith(str(folder)), str(e.value)
    elif fmt != "scene":
        assert str(e.value).startswith(str(path)), str(e.value)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if FILE_OF[f]])
def test_the_good_files_load(tmp_path, model, tiny_ckpt, fmt):
    """The catalogue's good inputs load: each bad case fails for what its change broke."""
    folder = tmp_path / "input"
    folder.mkdir()
    good, load = good_file(fmt, folder, model, tiny_ckpt)
    write_bad(fmt, folder, good, lambda g: g)
    load()


def test_missing_or_folder_paths(tmp_path, model):
    """A policy, hardware file or checkpoint path that is missing or a folder."""
    for load, message in ((lambda p: load_policy(p, model), "expected a policy JSON file"),
                          (load_hardware, "expected a TOML file"), (checkpoint.load, "expected a checkpoint file")):
        with pytest.raises(cli.BadInput, match=f"{re.escape(str(tmp_path))}: is a folder, {message}"):
            load(tmp_path)
    for load, name in ((lambda p: load_policy(p, model), "p.json"), (load_hardware, "h.toml"),
                       (checkpoint.load, "c.pt")):
        with pytest.raises(cli.BadInput, match=f"{name}: no such file"):
            load(tmp_path / name)


# -- flags and resumed states, in-process -----------------------------------------------------------------
MAINS = {"hero.train": "hero.train", "hero.qat": "hero.qat", "hero.caq": "hero.caq.__main__",
         "sim_py.report": "sim_py.report", "hero.search": "hero.search.__main__", "hero.sweep": "hero.sweep.__main__",
         "rtl.fpga": "rtl.fpga", "rtl.diagram": "rtl.diagram", "sim_py.calibrate": "sim_py.calibrate",
         **{b[0]: b[0] for b in (CYCLE_MODEL, HARD_SAMPLES, HASHGRID, HERO_VS_CAQ, HEU, MLP_ENGINE, QUANT, QUANT_SCALES,
                                 SEARCH_LEGO, SEARCH_METHODS, STEP_TIME, TRAIN_FERN, TRAIN_LEGO)}}

FLAG_CASES = [
    # hero.train
    (TRAIN, ["--steps", "1.5"], "argument --steps: '1.5' is not an integer; expected an integer >= 1"),
    (TRAIN, ["--steps", "inf"], "argument --steps: 'inf' is not an integer"),
    (TRAIN, ["--minutes", "0"], "argument --minutes: 0 is out of range; expected a number > 0"),
    (TRAIN, ["--minutes", "inf"], "argument --minutes: inf is out of range; expected a number > 0"),
    (TRAIN, ["--eval-every", "1.5"], "argument --eval-every: '1.5' is not an integer; expected an integer >= 0"),
    (TRAIN, ["--ckpt-every", "nan"], "argument --ckpt-every: 'nan' is not an integer"),
    (TRAIN, ["--test-views", "-1"], "argument --test-views: -1 is out of range; expected an integer >= 1"),
    (TRAIN, ["--hard-keep", "0"], "argument --hard-keep: 0 is out of range; expected a number > 0 and <= 1"),
    (TRAIN, ["--hard-keep", "nan"], "argument --hard-keep: nan is out of range"),
    (TRAIN, ["--hard-keep", "-0.5"], "argument --hard-keep: -0.5 is out of range"),
    (TRAIN, ["--seed", "-1"], "argument --seed: -1 is out of range; expected an integer >= 0"),
    (TRAIN, ["--downscale", "inf"], "argument --downscale: 'inf': expected 'auto' or an integer >= 1"),
    (TRAIN, ["--downscale", "2.5"], "argument --downscale: '2.5': expected 'auto' or an integer >= 1"),
    (TRAIN, ["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    # hero.qat
    (QAT, ["--steps", "nan"], "argument --steps: 'nan' is not an integer; expected an integer >= 0"),
    (QAT, ["--lr", "-1"], "argument --lr: -1 is out of range; expected a number >= 0"),
    (QAT, ["--lr", "inf"], "argument --lr: inf is out of range"),
    (QAT, ["--lr", "nan"], "argument --lr: nan is out of range; expected a number >= 0"),
    (QAT, ["--rays", "0"], "argument --rays: 0 is out of range; expected an integer >= 1"),
    (QAT, ["--rays", "1.5"], "argument --rays: '1.5' is not an integer"),
    (QAT, ["--held-out-rays", "0"], "argument --held-out-rays: 0 is out of range; expected an integer >= 1"),
    (QAT, ["--test-views", "0"], "argument --test-views: 0 is out of range; expected an integer >= 1"),
    (QAT, ["--policy", "uniform1"], "--policy uniform1: uniform bits must be 2..8"),
    (QAT, ["--tables", "lloyd"], "argument --tables: invalid choice: 'lloyd'"),
    (QAT, ["--ckpt", "{bad}"], "is a folder, expected a checkpoint file (.pt)"),
    (QAT, ["--ckpt", "{bad}/nothing.pt"], "--ckpt {bad}/nothing.pt: no such file"),
    (QAT, ["--ckpt", "{bad}/empty.pt"], "empty.pt: not a checkpoint (or saved run state), or a truncated one"),
    (QAT, ["--policy", "{bad}/nothing.json"], "nothing.json: no such file (expected a policy JSON file (or uniformN"),
    (QAT, ["--policy", "{bad}/hw_binary.toml"], "hw_binary.toml: not valid JSON (not UTF-8 text"),
    (QAT, ["--policy", "{bad}/policy_wrong.json"], "policy_wrong.json: format 'something-else' is not"),
    # hero.caq
    (CAQ, ["--psnr-target", "nan"], "argument --psnr-target: nan is out of range; expected a number > 0 and <= 100"),
    (CAQ, ["--psnr-target", "inf"], "argument --psnr-target: inf is out of range"),
    (CAQ, ["--psnr-target", "101"], "argument --psnr-target: 101 is out of range"),
    (CAQ, ["--lambda", "inf"], "argument --lambda: inf is out of range; expected a number >= 0"),
    (CAQ, ["--lambda", "nan"], "argument --lambda: nan is out of range"),
    (CAQ, ["--calib-batches", "0"], "argument --calib-batches: 0 is out of range; expected an integer >= 1"),
    (CAQ, ["--test-views", "0"], "argument --test-views: 0 is out of range"),
    (CAQ, ["--seed", "-1"], "argument --seed: -1 is out of range; expected an integer >= 0"),
    (CAQ, ["--steps", "1.5"], "argument --steps: '1.5' is not an integer"),
    (CAQ, ["--rays", "-4"], "argument --rays: -4 is out of range"),
    (CAQ, ["--ckpt", "{bad}"], "is a folder, expected a checkpoint file (.pt)"),
    (CAQ, ["--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
    # sim_py.report
    (REPORT, ["--view", "1.5"], "argument --view: '1.5' is not an integer; expected an integer >= 0"),
    (REPORT, ["--view", "99"], "--view 99: the test split has 16 views (give 0..15)"),
    (REPORT, ["--policies", "uniform1"], "--policies uniform1: fpga_ecp5 takes 2..8 bits"),
    (REPORT, ["--policies", ""], "--policies: '' is not a policy name of the form uniformN"),
    (REPORT, ["--hw", "nowhere"], "hardware 'nowhere': no such file or preset (presets: edge_asic, fpga_ecp5)"),
    (REPORT, ["--hw", "{bad}"], "is a folder, expected a TOML file or a preset name"),
    (REPORT, ["--hw", "{bad}/hw_bad.toml"], "hw_bad.toml: not valid TOML"),
    (REPORT, ["--backend", "spice"], "argument --backend: invalid choice: 'spice'"),
    (REPORT, ["--ckpt", "{bad}"], "--ckpt {bad}: is a folder, expected a checkpoint file (.pt)"),
    # hero.search (its own checks)
    (SEARCH, ["--seed", "-1"], "argument --seed: -1 is out of range; expected an integer >= 0"),
    (SEARCH, ["--latency-budget", "0"], "argument --latency-budget: 0 is out of range; expected a number > 0"),
    (SEARCH, ["--latency-budget", "nan"], "argument --latency-budget: nan is out of range; expected a number > 0"),
    (SEARCH, ["--size-budget", "-1"], "argument --size-budget: -1 is out of range; expected a number > 0"),
    (SEARCH, ["--train-minutes", "0"], "argument --train-minutes: 0 is out of range; expected a number > 0"),
    (SEARCH, ["--qat-steps", "-1"], "argument --qat-steps: -1 is out of range; expected an integer >= 0"),
    (SEARCH, ["--held-out-rays", "10"], "argument --held-out-rays: 10 is out of range; expected an integer >= 64"),
    (SEARCH, ["--test-views", "0"], "argument --test-views: 0 is out of range; expected an integer >= 1"),
    (SEARCH, ["--evaluations", "0"], "argument --evaluations: 0 is out of range; expected an integer >= 1"),
    (SEARCH, ["--latency-weight", "-1"], "argument --latency-weight: -1 is out of range; expected a number >= 0"),
    (SEARCH, ["--episodes", "1.5"], "argument --episodes: '1.5' is not an integer; expected an integer >= 1"),
    (SEARCH, ["--refine-passes", "-1"], "argument --refine-passes: -1 is out of range; expected an integer >= 0"),
    # hero.sweep
    (["hero.sweep"], ["{bad}"], "is a folder, expected a sweep TOML file"),
    (SWEEP, ["--num-cpus", "0"], "argument --num-cpus: 0 is out of range; expected an integer >= 1"),
    (SWEEP, ["--address", "auto", "--num-cpus", "2"], "--num-cpus: only for the local Ray"),
    # rtl.fpga, rtl.diagram, sim_py.calibrate
    (FPGA, ["core", "--depth", "1"], "--depth: depth must be an integer in 2..16777216, got 1"),
    (FPGA, ["mlp-engine", "--rows", "x"], "argument --rows: 'x' is not an integer"),
    (FPGA, ["mlp-engine", "--max-wbits", "1"], "--max-wbits: max_wbits must be an integer in 2..16, got 1"),
    (FPGA, ["mlp-engine", "-o", "{bad}/out_file"], "-o {bad}/out_file: cannot write there"),
    (FPGA, ["asic"], "argument BLOCK: invalid choice: 'asic'"),
    (DIAGRAM, ["--log2t", "2"], "--log2t: log2t must be an integer in 3..20, got 2"),
    (DIAGRAM, ["--levels", "nan"], "argument --levels: invalid int value: 'nan'"),
    (CALIBRATE, ["--out", "{bad}/out_file/c.json"], "--out {bad}/out_file/c.json: cannot write there"),
    (CALIBRATE, ["--points", "3"], "unrecognized arguments: --points 3"),
    # bench.cycle_model
    (CYCLE_MODEL, ["--ckpt", "{bad}"], "--ckpt {bad}: is a folder, expected a checkpoint file (.pt)"),
    (CYCLE_MODEL, ["--ckpt", "{bad}/nothing.pt"], "--ckpt {bad}/nothing.pt: no such file"),
    (CYCLE_MODEL, ["--hw", "nowhere"], "--hw: hardware 'nowhere': no such file or preset"),
    # bench.hard_samples
    (HARD_SAMPLES, ["--keep", "0"], "argument --keep: 0 is out of range; expected a number > 0 and <= 1"),
    (HARD_SAMPLES, ["--margin", "30"], "argument --margin: 30 is out of range; expected a number > 0 and <= 20"),
    (HARD_SAMPLES, ["--minutes", "nan"], "argument --minutes: nan is out of range; expected a number > 0"),
    (HARD_SAMPLES, ["--downscale", "2.5"], "argument --downscale: '2.5': expected 'auto' or an integer >= 1"),
    (HARD_SAMPLES, ["--views", "0"], "argument --views: 0 is out of range; expected an integer >= 1"),
    (HARD_SAMPLES, ["--seed", "-1"], "argument --seed: -1 is out of range; expected an integer >= 0"),
    # bench.step_time
    (STEP_TIME, ["--steps", "1"], "argument --steps: 1 is out of range; expected an integer >= 2"),
    (STEP_TIME, ["--skip", "400"], "--skip 400: must be below --steps 300"),
    (STEP_TIME, ["--repeats", "0"], "argument --repeats: 0 is out of range; expected an integer >= 1"),
    # bench.hashgrid
    (HASHGRID, ["--n", "0"], "argument --n: 0 is out of range; expected an integer >= 1"),
    (HASHGRID, ["--repeats", "1.5"], "argument --repeats: '1.5' is not an integer; expected an integer >= 1"),
    # bench.hero_vs_caq
    (HERO_VS_CAQ, ["--views", "0"], "argument --views: 0 is out of range; expected an integer >= 1"),
    (HERO_VS_CAQ, ["--weights", "1", "0"], "argument --weights: 0 is out of range; expected a number > 0"),
    (HERO_VS_CAQ, ["--qat-lr", "inf"], "argument --qat-lr: inf is out of range; expected a number >= 0"),
    (HERO_VS_CAQ, ["--held-out-rays", "10"], "argument --held-out-rays: 10 is out of range; expected an integer >= 64"),
    (HERO_VS_CAQ, ["--presets", "fpga_ecp5", "nowhere"], "--presets: hardware 'nowhere': no such file or preset"),
    (HERO_VS_CAQ, ["--lego-ckpt", "{bad}/nothing.pt"], "--lego-ckpt {bad}/nothing.pt: no such file (train one"),
    (HERO_VS_CAQ, ["--procedural-ckpt", "{bad}/empty.pt"], "--procedural-ckpt {bad}/empty.pt: not a checkpoint"),
    (HERO_VS_CAQ, ["--out", "{bad}/out_file"], "--out: {bad}/out_file: exists and is not a folder"),
    # bench.heu and bench.mlp_engine: the blocks' legal ranges
    (HEU, ["--log2t", "99"], "--log2t: log2t must be an integer in 3..20, got 99"),
    (HEU, ["--word-bits", "24"], "--word-bits: word_bits must be a power of two, got 24"),
    (HEU, ["--points", "0"], "argument --points: 0 is out of range; expected an integer >= 1"),
    (MLP_ENGINE, ["--rows", "0"], "--rows: rows must be an integer in 1..64, got 0"),
    (MLP_ENGINE, ["--max-wbits", "9"], "argument --max-wbits: 9 is out of range; expected an integer >= 2 and <= 8"),
    # bench.quant and bench.quant_scales
    (QUANT, ["--ckpt", "{bad}"], "--ckpt {bad}: is a folder, expected a checkpoint file (.pt)"),
    (QUANT, ["--ckpt", "{bad}/corrupt.pt"], "--ckpt {bad}/corrupt.pt: not a checkpoint"),
    (QUANT, ["--qat-lr", "nan"], "argument --qat-lr: nan is out of range; expected a number >= 0"),
    (QUANT, ["--qat-steps", "-1"], "argument --qat-steps: -1 is out of range; expected an integer >= 0"),
    (QUANT, ["--out", "{bad}/out_file"], "--out: {bad}/out_file: exists and is not a folder"),
    (QUANT_SCALES, ["--views", "0"], "argument --views: 0 is out of range; expected an integer >= 1"),
    (QUANT_SCALES, ["--ckpt", "{bad}/nothing.pt"], "--ckpt {bad}/nothing.pt: no such file"),
    # bench.search_lego and bench.search_methods
    (SEARCH_LEGO, ["--seeds", "0", "-1"], "argument --seeds: -1 is out of range; expected an integer >= 0"),
    (SEARCH_LEGO, ["--episodes", "0"], "argument --episodes: 0 is out of range; expected an integer >= 1"),
    (SEARCH_LEGO, ["--hw-preset", "{bad}/hw_bad.toml"], "--hw-preset: {bad}/hw_bad.toml: not valid TOML"),
    (SEARCH_LEGO, ["--ckpt", "{bad}/empty.pt"], "--ckpt {bad}/empty.pt: not a checkpoint"),
    (SEARCH_METHODS, ["--evaluations", "0"], "argument --evaluations: 0 is out of range; expected an integer >= 1"),
    (SEARCH_METHODS, ["--lego-ckpt", "{bad}"], "--lego-ckpt {bad}: is a folder, expected a checkpoint file (.pt)"),
    (SEARCH_METHODS, ["--hw-presets", "nowhere"], "--hw-presets: hardware 'nowhere': no such file or preset"),
    (SEARCH_METHODS, ["--methods", "random"], "--methods: the benchmark measures DDPG against the others"),
    # bench.train_fern and bench.train_lego (bench/training_curve.py)
    (TRAIN_FERN, ["--curve-views", "0"], "argument --curve-views: 0 is out of range; expected an integer >= 1"),
    (TRAIN_FERN, ["--test-views", "-1"], "argument --test-views: -1 is out of range; expected an integer >= 1"),
    (TRAIN_LEGO, ["--curve-every", "0"], "argument --curve-every: 0 is out of range; expected a number > 0"),
    (TRAIN_LEGO, ["--downscale", "inf"], "argument --downscale: 'inf': expected 'auto' or an integer >= 1"),
    (TRAIN_LEGO, ["--out", "{bad}/out_file"], "out_file: exists and is not a folder"),
]


def put_state(name: str, change=None):
    """A setup: `name` in the run's --out, the tiny checkpoint's dict (changed by `change`), or bytes."""
    def setup(out: Path, ckpt: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        if isinstance(change, bytes):
            (out / name).write_bytes(change)
        else:
            st = checkpoint.load_state(ckpt)
            torch.save(change(st) if change else st, out / name)
    return setup


def default_tiny_model(st):
    from hero.nerf.presets import preset

    return {**st, "config": {**st["config"], "model": preset("tiny")}}


TRAIN_RESUME = ["hero.train", "--preset", "tiny", "--device", "cpu", "--no-progress", "--out", "{tmp}/out",
                "--data", "{bad}/scene"]
RESUME_CASES = [  # (command, its arguments, the state put into its --out, message)
    (TRAIN_RESUME, ["--preset", "cpu"], put_state("checkpoint.pt"),
     "--preset cpu: {tmp}/out/checkpoint.pt was trained with --preset tiny; give --preset tiny to resume it"),
    (TRAIN_RESUME, [], put_state("checkpoint.pt"), "checkpoint.pt holds a model of another configuration than"),
    (TRAIN_RESUME, [], put_state("checkpoint.pt", default_tiny_model), "checkpoint.pt was trained on"),
    (TRAIN_RESUME, [], put_state("checkpoint.pt", lambda st: {"model": st["model"], "ranges": {}, "key": {}}),
     "checkpoint.pt: not a checkpoint of python -m hero.train (it is a QAT state (qat_state.pt))"),
    (TRAIN_RESUME, [], put_state("checkpoint.pt", b"\x00" * 10), "checkpoint.pt: not a checkpoint"),
    (TRAIN_RESUME, [], put_state("checkpoint.pt", lambda st: {**st, "config": None}),
     "checkpoint.pt: a damaged checkpoint: its 'config' is a NoneType, expected a dict"),
    (QAT, ["--out", "{tmp}/out"], put_state("qat_state.pt", b"garbage"),
     "qat_state.pt: not a checkpoint (or saved run state), or a truncated one"),
    (QAT, ["--out", "{tmp}/out"], put_state("qat_state.pt", b""), "qat_state.pt: not a checkpoint (or saved run "
                                                                   "state), or a truncated one (empty file)"),
    (QAT, ["--out", "{tmp}/out"], put_state("qat_state.pt"), "qat_state.pt: not a QAT state, or a damaged one: it "
                                                              "has no 'key' (dict)"),
    (CAQ, ["--out", "{tmp}/out"], put_state("caq_state.pt", b"garbage"), "caq_state.pt: not a checkpoint"),
    (CAQ, ["--out", "{tmp}/out"], put_state("caq_state.pt"), "caq_state.pt: not a CAQ state, or a damaged one"),
    (SEARCH, ["--ckpt", "{ckpt}", "--out", "{tmp}/out", "--episodes", "2", "--qat-steps", "0", "--held-out-rays", "64",
              "--test-views", "1"], put_state("search_state.pt", b"garbage"), "search_state.pt: not a checkpoint"),
    (REPORT, ["--ckpt", "{tmp}/out/qat_state.pt"], put_state("qat_state.pt", lambda st: {"ranges": {}, "key": {}}),
     "qat_state.pt: not a checkpoint of python -m hero.train (it is a QAT state (qat_state.pt))"),
]


def call_main(base, args, bad, ckpt, tmp_path, capsys):
    """Run a command's main() in-process; (exit status, stderr)."""
    import importlib

    argv = _argv(base, args, bad=bad, ckpt=ckpt, tmp=tmp_path)
    main = importlib.import_module(MAINS[argv[0]]).main
    try:
        status = main(argv[1:])
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("base, args, message", FLAG_CASES, ids=[case_id(b[0], *a) for b, a, _ in FLAG_CASES])
def test_bad_flag_gets_one_clear_line(bad, tiny_ckpt, tmp_path, capsys, base, args, message):
    status, err = call_main(base, args, bad, tiny_ckpt, tmp_path, capsys)
    assert_one_line(status, err, message.format(bad=bad))


@pytest.mark.parametrize("base, args, setup, message", RESUME_CASES,
                         ids=[case_id(b[0], m) for b, _, _, m in RESUME_CASES])
def test_broken_or_foreign_state_in_out_gets_one_clear_line(bad, tiny_ckpt, tmp_path, capsys, base, args, setup,
                                                            message):
    setup(tmp_path / "out", tiny_ckpt)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    status, err = call_main(base, args, bad, tiny_ckpt, tmp_path, capsys)
    assert_one_line(status, err, message.format(tmp=tmp_path))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before  # nothing written


GOOD_FIELD = {dict: {}, list: [], int: 3, float: 1.5, type(None): None}


def _good_state(fields: dict) -> dict:
    return {k: GOOD_FIELD[v[0] if isinstance(v, tuple) else v] for k, v in fields.items()}


STATE_CASES = [(what, key, bad) for what, fields in checkpoint.STATE_FIELDS.items() for key in fields
               for bad in ("missing", "a string", *(("-1",) if fields[key] is int else ()))]


@pytest.mark.parametrize("what, key, bad", STATE_CASES, ids=[f"{w}-{k}-{b}" for w, k, b in STATE_CASES])
def test_run_states_are_checked_field_by_field(tmp_path, what, key, bad):
    """Every field of every run state a rerun resumes from: missing, of the wrong type, or a negative count."""
    fields = checkpoint.STATE_FIELDS[what]
    settings_key = next(iter(fields))
    st = _good_state(fields)
    checkpoint.save(tmp_path / "state.pt", st)
    assert checkpoint.load_run_state(tmp_path / "state.pt", what, settings_key, st[settings_key]) == st
    if bad == "missing":
        del st[key]
    else:
        st[key] = "x" if bad == "a string" else -1
    checkpoint.save(tmp_path / "state.pt", st)
    with pytest.raises(cli.BadInput, match=f"state.pt: .*{what}.*'{key}'"):
        checkpoint.load_run_state(tmp_path / "state.pt", what, settings_key, st.get(settings_key, {}))


CATALOGUE = {"subprocess": len(CASES), "files": len(FILE_CASES), "flags": len(FLAG_CASES), "resume": len(RESUME_CASES),
             "state fields": len(STATE_CASES)}


def command_lines() -> set[str]:
    """Every command line of the project: each module with a main() (python -m NAME), the benches included."""
    found = set()
    for package in ("hero", "sim_py", "rtl", "bench", "verif"):
        for path in (ROOT / package).rglob("*.py"):
            if re.search(r"^def main\(", path.read_text(encoding="utf-8"), re.M):
                parts = path.relative_to(ROOT).with_suffix("").parts
                found.add(".".join(parts[:-1] if parts[-1] == "__main__" else parts))
    return found


def test_catalogue_size():
    """Issue 16 asks for at least 80 bad inputs across every command line and file format; every command line
    (each module with a main, the benches included) has its cases."""
    assert sum(CATALOGUE.values()) >= 300, CATALOGUE
    clis = command_lines()
    assert {"hero.train", "hero.sweep", "rtl.gen", "sim_py.calibrate", "bench.quant", "bench.train_lego"} <= clis
    assert not clis - {b[0] for b, _, _ in CASES + FLAG_CASES}, "command lines without a bad-input case"
    assert set(MAINS) <= clis
    assert set(FORMATS) >= {"blender", "ngp", "llff", "policy", "hardware", "checkpoint"}


GONE = [  # a command whose checkpoint's scene folder is not there any more, refused after its first checks
    (SEARCH, ["--ckpt", "{tmp}/gone.pt", "--out", "{tmp}/search"]),
    (QAT, ["--ckpt", "{tmp}/gone.pt", "--out", "{tmp}/qat"]),
    (CAQ, ["--ckpt", "{tmp}/gone.pt", "--out", "{tmp}/caq"]),
    (REPORT, ["--ckpt", "{tmp}/gone.pt", "--out", "{tmp}/report"]),
]


@pytest.mark.parametrize("base, args", GONE, ids=[b[0] for b, _ in GONE])
def test_a_failed_run_leaves_no_empty_out(bad, tiny_ckpt, tmp_path, capsys, base, args):
    st = checkpoint.load_state(tiny_ckpt)
    torch.save({**st, "data": str(tmp_path / "moved_scene")}, tmp_path / "gone.pt")
    status, err = call_main(base, args, bad, tiny_ckpt, tmp_path, capsys)
    assert_one_line(status, err, "moved_scene")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone.pt"], "the failed run left its --out behind"

