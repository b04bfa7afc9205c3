"""Scene loaders, the procedural scene and its reference renderer, rays, and the one-error-per-problem rule."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hero.data import DataError, load_scene, procedural
from hero.data.rays import box_intersect, image_rays, to_ndc


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return procedural.build(tmp_path_factory.mktemp("proc"), size=24, n_train=6, n_val=2, n_test=2)


@pytest.fixture
def scene_copy(scene_dir, tmp_path):
    dst = tmp_path / "scene"
    shutil.copytree(scene_dir, dst)
    return dst


def test_procedural_scene_loads_as_blender(scene_dir):
    s = load_scene(scene_dir, "train")
    assert s.images.shape == (6, 24, 24, 3) and s.images.dtype == np.uint8
    assert s.c2w.shape == (6, 3, 4)
    assert s.fx == pytest.approx(0.5 * 24 / math.tan(0.5 * procedural.CAMERA_ANGLE_X))
    # background composited on white, and the objects are not white
    assert (s.images[:, 0, 0] == 255).all()
    assert (s.images.reshape(-1, 3).min(-1) < 128).any()
    assert len(load_scene(scene_dir, "test")) == 2


def test_reference_renderer_hits_and_misses():
    o = np.array([[0.0, 0.0, 4.0], [0.0, 0.0, 4.0]])
    d = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    rgba = procedural.shade(o, d)
    assert rgba[0, 3] == 1.0 and rgba[1, 3] == 0.0
    assert 0.0 <= rgba[0, :3].min() and rgba[0, :3].max() <= 1.0


def test_build_is_cached(scene_dir):
    before = (scene_dir / "train" / "r_0.png").stat().st_mtime_ns
    procedural.build(scene_dir, size=24, n_train=6, n_val=2, n_test=2)
    assert (scene_dir / "train" / "r_0.png").stat().st_mtime_ns == before


def test_blender_downscale(scene_dir):
    full = load_scene(scene_dir, "train")
    half = load_scene(scene_dir, "train", downscale=2)
    assert half.images.shape[1:3] == (12, 12)
    assert half.fx == pytest.approx(full.fx / 2)


def test_error_missing_scene(tmp_path):
    with pytest.raises(DataError, match="no scene found"):
        load_scene(tmp_path)


def test_error_missing_image(scene_copy):
    (scene_copy / "train" / "r_3.png").unlink()
    with pytest.raises(DataError, match=r"r_3\.png: image file is missing"):
        load_scene(scene_copy, "train")


def test_error_unreadable_image(scene_copy):
    (scene_copy / "train" / "r_2.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"r_2\.png: unreadable image"):
        load_scene(scene_copy, "train")


def test_error_pose_shape(scene_copy):
    p = scene_copy / "transforms_train.json"
    meta = json.loads(p.read_text())
    meta["frames"][1]["transform_matrix"] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    p.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"transforms_train\.json: frame 1 .*pose matrix has shape \[3, 3\]"):
        load_scene(scene_copy, "train")


def test_error_mismatched_sizes(scene_copy):
    Image.new("RGBA", (30, 20)).save(scene_copy / "train" / "r_4.png")
    with pytest.raises(DataError, match=r"r_4\.png: image is 30x20 .*same size"):
        load_scene(scene_copy, "train")


def test_ngp_transforms_skips_missing_frames(scene_copy):
    meta = json.loads((scene_copy / "transforms_train.json").read_text())
    f = 0.5 * 24 / math.tan(0.5 * meta["camera_angle_x"])
    frames = meta["frames"] + [{"file_path": "./train/nope", "transform_matrix": meta["frames"][0]["transform_matrix"]}]
    ngp = {"fl_x": f, "fl_y": f, "cx": 12.0, "cy": 12.0, "w": 24, "h": 24, "aabb_scale": 2, "frames": frames}
    (scene_copy / "transforms.json").write_text(json.dumps(ngp))
    with pytest.warns(UserWarning, match="skipping 1 frame"):
        train = load_scene(scene_copy / "transforms.json", "train")
    with pytest.warns(UserWarning, match="skipping 1 frame"):
        test = load_scene(scene_copy / "transforms.json", "test")
    assert len(train) + len(test) == 6  # the missing frame is gone, every 8th held out
    assert train.fx == pytest.approx(f)
    np.testing.assert_allclose(train.aabb[1] - train.aabb[0], 2 / 0.33, rtol=1e-5)


def write_llff(root, n=9, cols=17):
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    poses = []
    for i in range(n):
        m = np.zeros((3, 5))
        m[:3, :3] = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1.0]])  # [down, right, back] columns
        m[:3, 3] = [0.1 * i, 0.05 * i, 0.0] + rng.normal(0, 0.01, 3)
        m[:, 4] = [16, 20, 18.0]  # h, w, focal
        poses.append(np.concatenate([m.reshape(-1), [2.0, 10.0]]))
        Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(root / "images" / f"{i:03d}.png")
    arr = np.stack(poses)
    np.save(root / "poses_bounds.npy", arr[:, :cols] if cols != 17 else arr)


def test_llff_loads_forward_facing(tmp_path):
    write_llff(tmp_path)
    train, test = load_scene(tmp_path, "train"), load_scene(tmp_path, "test")
    assert train.ndc and len(train) == 7 and len(test) == 2
    assert train.images.shape[1:] == (16, 20, 3)
    assert train.fx == pytest.approx(18.0)
    assert train.white_background is False


def test_llff_bad_pose_matrix(tmp_path):
    write_llff(tmp_path, cols=15)
    with pytest.raises(DataError, match=r"poses_bounds\.npy: pose matrix has shape \[9, 15\]"):
        load_scene(tmp_path)


def test_rays_centre_pixel_looks_down_minus_z():
    c2w = torch.eye(4)[:3]
    o, d = image_rays(c2w, 3, 3, 10.0, 10.0, 1.5, 1.5)
    assert torch.allclose(d[4], torch.tensor([0.0, 0.0, -1.0]))
    assert torch.allclose(o[4], torch.zeros(3))
    near, far = box_intersect(torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([[0.0, 0.0, -1.0]]),
                              torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    assert near.item() == pytest.approx(3.0) and far.item() == pytest.approx(5.0)


def test_ndc_maps_near_plane_to_minus_one():
    o, d = to_ndc(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]), 10, 10, 10.0)
    assert o[0, 2].item() == pytest.approx(-1.0)
    # a point at infinity along the ray ends at z = +1
    assert (o[0, 2] + d[0, 2]).item() == pytest.approx(1.0)


def test_cli_reports_data_error_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hero.train", "--data", str(tmp_path / "nothing"), "--out",
                        str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "error:" in r.stderr and "scene path does not exist" in r.stderr
    assert "Traceback" not in r.stderr
