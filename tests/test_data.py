"""Scene loaders, the procedural scene and its reference renderer, rays, and the one-error-per-problem rule."""

import json
import math
import re
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hero.data import DataError, load_scene, procedural
from hero.data.rays import box_intersect, camera_dirs, image_rays, to_ndc
from hero.data.scene import choose_downscale
from hero.nerf.presets import MAX_SIDE
from hero.nerf.render import camera_meta, prepare_rays


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


def test_llff_ndc_box_holds_every_cameras_rays(tmp_path):
    """Cameras away from the average one see past x, y = +-1 in NDC: the box holds every ray of every
    view (train and test), from the near plane to infinity, so no ray is cut at the box's side."""
    write_llff(tmp_path)
    train, test = load_scene(tmp_path, "train"), load_scene(tmp_path, "test")
    np.testing.assert_array_equal(train.aabb, test.aabb)  # one box for the model, whichever split
    box = torch.from_numpy(train.aabb)
    assert bool((box[0, :2] < -1).any() or (box[1, :2] > 1).any())  # these cameras do see past +-1
    for sc in (train, test):
        meta = camera_meta(sc)
        for c2w in sc.c2w:
            o, d = prepare_rays(*image_rays(torch.from_numpy(c2w), sc.height, sc.width, sc.fx, sc.fy, sc.cx, sc.cy),
                                meta)
            far = o + ((1 - o[:, 2]) / d[:, 2])[:, None] * d
            for p in (o, far):
                assert bool(((p >= box[0] - 1e-5) & (p <= box[1] + 1e-5)).all())


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


def test_auto_downscale_prefers_prebuilt_llff_folders(tmp_path):
    write_llff(tmp_path)  # images/ at 20x16
    (tmp_path / "images_2").mkdir()
    for i in range(9):
        Image.new("RGB", (10, 8)).save(tmp_path / "images_2" / f"{i:03d}.png")
    assert choose_downscale(tmp_path, 20) == (1, "20x16 (full size)")
    assert choose_downscale(tmp_path, 12) == (2, "10x8 (images_2/)")
    assert choose_downscale(tmp_path, 6) == (4, "5x4 (20x16 / 4)")  # no images_4/: images/ resized
    assert load_scene(tmp_path, "train", 2).images.shape[1:3] == (8, 10)
    with pytest.raises(DataError, match=r"--downscale 64 is too large for its 20x16 images \(at most 16\)"):
        load_scene(tmp_path, "train", 64)
    with pytest.raises(ValueError, match="--downscale 0: expected an integer >= 1"):
        load_scene(tmp_path, "train", 0)


FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "nerf_llff_data" / "fern"


@pytest.mark.skipif(not FERN.is_dir(), reason="the fern capture is not here")
def test_auto_downscale_of_a_phone_capture():
    """fern: images/ at 4032x3024 with LLFF's images_4/ and images_8/ (only image headers are read)."""
    assert choose_downscale(FERN, MAX_SIDE["cpu"]) == (8, "504x378 (images_8/)")
    assert choose_downscale(FERN, MAX_SIDE["paper"]) == (4, "1008x756 (images_4/)")


def test_images_stay_uint8_and_load_within_one_copy(tmp_path):
    """RGBA images are composited in integers and written into one preallocated uint8 array: loading
    needs the scene's uint8 size plus a few images, not a float copy or a second stack."""
    n, s = 16, 128
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    frames = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (s, s, 4), dtype=np.uint8), "RGBA").save(tmp_path / "train" / f"{i}.png")
        frames.append({"file_path": f"./train/{i}", "transform_matrix": np.eye(4).tolist()})
    for split in ("train", "test"):
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    tracemalloc.start()
    try:
        scene = load_scene(tmp_path, "train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scene.images.dtype == np.uint8 and scene.alpha.dtype == np.uint8
    one_image = s * s * 4
    assert peak - scene.images.nbytes - scene.alpha.nbytes < 8 * one_image, peak
    rgba = np.asarray(Image.open(tmp_path / "train" / "3.png")).astype(np.float64)
    want = rgba[..., :3] * rgba[..., 3:] / 255 + 255 * (1 - rgba[..., 3:] / 255)  # over white
    assert np.abs(scene.images[3] - want).max() <= 0.5 + 1e-9


def opencv_distort(x, y, k1, k2, p1, p2):
    """The OpenCV radial-tangential model, written out here independently of hero.data.camera."""
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def fisheye_distort(x, y, k1, k2):
    r = math.hypot(x, y)
    theta = math.atan(r)
    s = theta * (1 + k1 * theta ** 2 + k2 * theta ** 4) / r
    return x * s, y * s


def write_blob_capture(root, lens: dict, xu: float, yu: float, w=96, h=72, f=80.0, cx=47.3, cy=36.8):
    """Three frames of a distorted camera seeing one small bright blob, which an ideal pinhole camera of
    the same rays would see at the normalised point (xu, yu) (y down)."""
    if lens.get("camera_model") == "OPENCV_FISHEYE":
        xd, yd = fisheye_distort(xu, yu, lens["k1"], lens["k2"])
    else:
        xd, yd = opencv_distort(xu, yu, lens["k1"], lens["k2"], lens["p1"], lens["p2"])
    ud, vd = f * xd + cx, f * yd + cy  # the blob's centre in the captured image (pixel i covers [i, i+1))
    j, i = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    blob = 255 * np.exp(-((i - ud) ** 2 + (j - vd) ** 2) / (2 * 1.5 ** 2))
    img = np.repeat(np.clip(blob + 0.5, 0, 255).astype(np.uint8)[..., None], 3, -1)
    frames = []
    for k in range(3):
        Image.fromarray(img).save(root / f"f{k}.png")
        frames.append({"file_path": f"f{k}.png", "transform_matrix": np.eye(4).tolist()})
    meta = {"fl_x": f, "fl_y": f, "cx": cx, "cy": cy, "w": w, "h": h, **lens, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return (ud, vd), (f * xu + cx, f * yu + cy)


@pytest.mark.parametrize("lens, point", [
    ({"camera_model": "OPENCV", "k1": -0.3, "k2": 0.05, "p1": 0.004, "p2": -0.003}, (0.42, -0.28)),
    ({"camera_model": "OPENCV_FISHEYE", "k1": 0.02, "k2": -0.005}, (0.45, -0.3)),
])
def test_distorted_capture_is_undistorted_to_a_pinhole_camera(tmp_path, lens, point):
    xu, yu = point
    distorted, pinhole = write_blob_capture(tmp_path, lens, xu, yu)
    assert math.dist(distorted, pinhole) > 2.0  # ignoring the lens would miss by more than 2 pixels
    s = load_scene(tmp_path, "train")
    img = s.images[0, :, :, 0].astype(np.float64)
    img = np.where(img > 8, img, 0.0)  # the blob, without the resampling's faint halo
    j, i = np.meshgrid(np.arange(s.height) + 0.5, np.arange(s.width) + 0.5, indexing="ij")
    uc, vc = (img * i).sum() / img.sum(), (img * j).sum() / img.sum()
    # the project's camera ray through the blob's centre must be the analytic one, (xu, -yu, -1)
    d = camera_dirs(torch.tensor([uc - 0.5]), torch.tensor([vc - 0.5]), s.fx, s.fy, s.cx, s.cy)[0]
    tol = 0.15 / s.fx  # 0.15 pixel
    assert d[0].item() == pytest.approx(xu, abs=tol) and d[1].item() == pytest.approx(-yu, abs=tol)
    assert (s.cx, s.cy) == (47.3, 36.8)
    assert s.images.min() >= 0 and s.images[0, 0].max() < 8  # every pixel inside the capture: no smear


@pytest.mark.parametrize("change, message", [
    ({"camera_model": "EQUIRECTANGULAR"}, "'camera_model' EQUIRECTANGULAR is not supported"),
    ({"ftheta_p0": 1.0}, "'ftheta_p0': this lens model is not supported"),
    ({"k1": "0.1"}, "'k1' is \"0.1\", expected a finite number"),
    ({"camera_model": "OPENCV", "is_fisheye": True}, "'camera_model' OPENCV contradicts 'is_fisheye' true"),
    ({"camera_model": "OPENCV_FISHEYE", "p1": 0.01}, "'p1'/'p2' (tangential distortion) are not part"),
    ({"frame_k1": 0.2}, "frame 1 has its own camera ('k1' 0.2 against 0.0 in frame 0)"),
    ({"k1": -3.0}, "folds over inside the image"),
])
def test_lens_models_without_a_pinhole_mapping_are_refused(tmp_path, change, message):
    write_blob_capture(tmp_path, {"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}, 0.1, 0.1)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    if "frame_k1" in change:
        meta["frames"][1]["k1"] = change.pop("frame_k1")
    meta.update(change)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=re.escape(message)) as e:
        load_scene(tmp_path, "train")
    assert str(e.value).startswith(str(tmp_path / "transforms.json"))
