"""instant-ngp transforms.json: fl_x, fl_y, cx, cy, aabb_scale, lens distortion (hero.data.camera);
frames whose image is missing are skipped."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np

from hero.data.blender import frame_image_path, frame_list, read_json
from hero.data.camera import LENS_KEYS, lens_from, undistort
from hero.data.errors import DataError
from hero.data.scene import Scene, check_same_size, image_size, json_number, pose_matrix, scaled_size, stack_images

TEST_EVERY = 8  # a single transforms.json: every 8th frame is held out for val/test
#: The keys that describe the camera; a frame may repeat them (instant-ngp reads per-frame overrides).
CAMERA_KEYS = ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y", "x_fov", "y_fov", "cx", "cy", "w", "h",
               *LENS_KEYS)


def intrinsics(meta: dict, jpath: Path, w: int, h: int) -> tuple[float, float, float, float]:
    if "fl_x" in meta:
        fx = json_number(meta, "fl_x", jpath, positive=True)
        fy = json_number(meta, "fl_y", jpath, default=fx, positive=True)
    elif "camera_angle_x" in meta:
        fx = 0.5 * w / math.tan(0.5 * json_number(meta, "camera_angle_x", jpath, positive=True, below=math.pi))
        fy = (0.5 * h / math.tan(0.5 * json_number(meta, "camera_angle_y", jpath, positive=True, below=math.pi))
              if "camera_angle_y" in meta else fx)
    elif "x_fov" in meta or "y_fov" in meta:
        raise DataError(jpath, "'x_fov'/'y_fov' (degrees) are not read here: give 'fl_x' or 'camera_angle_x'")
    else:
        raise DataError(jpath, "no focal length (expected 'fl_x' or 'camera_angle_x')")
    cx, cy = json_number(meta, "cx", jpath, default=w / 2.0), json_number(meta, "cy", jpath, default=h / 2.0)
    for key, c, size in (("cx", cx, w), ("cy", cy, h)):
        if not 0 <= c <= size:
            raise DataError(jpath, f"{key!r} is {c:g}, outside the {w}x{h} image; expected a principal point in "
                                   f"0..{size} (pixels)")
    return fx, fy, cx, cy


def camera(meta: dict, frames: list[tuple[str, dict]], jpath: Path) -> dict:
    """The one camera of all frames: the top-level keys with each frame's overrides, which must agree."""
    top = {k: meta[k] for k in CAMERA_KEYS if k in meta}
    cams = [{**top, **{k: fr[k] for k in CAMERA_KEYS if k in fr}} for _, fr in frames]
    for i, c in enumerate(cams):
        if c != cams[0]:
            key = next(k for k in CAMERA_KEYS if c.get(k) != cams[0].get(k))
            raise DataError(jpath, f"frame {i} has its own camera ({key!r} {json.dumps(c.get(key))} against "
                                   f"{json.dumps(cams[0].get(key))} in frame 0): one camera for all frames is "
                                   "supported")
    return cams[0]


def existing_frames(jpath: Path, meta: dict) -> tuple[list[Path], list[np.ndarray], dict]:
    """(image files, poses, camera) of the frames whose image exists."""
    root = jpath.parent
    files, poses, kept, missing = [], [], [], []
    for i, (fp, fr) in enumerate(frame_list(meta, jpath)):
        f = frame_image_path(root, fp)
        if not f.is_file():
            missing.append(str(f))
            continue
        files.append(f)
        poses.append(pose_matrix(fr["transform_matrix"], jpath, f"frame {i} ({fp})"))
        kept.append((fp, fr))
    if missing:
        warnings.warn(f"{jpath}: skipping {len(missing)} frame(s) whose image is missing, e.g. {missing[0]}",
                      stacklevel=3)
    if not files:
        raise DataError(jpath, "no frame has an existing image file")
    return files, poses, camera(meta, kept, jpath)


def full_size(jpath: Path, cam: dict, first: Path) -> tuple[int, int]:
    w, h = image_size(first)
    w0, h0 = (int(json_number(cam, k, jpath, default=v, positive=True, integer=True)) for k, v in (("w", w), ("h", h)))
    if (w0, h0) != (w, h):
        raise DataError(first, f"image is {w}x{h} but {jpath.name} says {w0}x{h0}")
    return w, h


def sizes(jpath: str | Path) -> dict[int, tuple[int, int]]:
    """{1: (W, H)} of the images (no prebuilt smaller copies in this format)."""
    jpath = Path(jpath)
    meta = read_json(jpath)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load() warns about missing frames
        files, _, cam = existing_frames(jpath, meta)
    return {1: full_size(jpath, cam, files[0])}


def load(jpath: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load an instant-ngp scene. World box: instant-ngp maps x -> scale*x + offset into [0,1]^3,
    enlarged aabb_scale times about its centre (defaults scale=0.33, offset=0.5). A distorted lens is
    undistorted into a pinhole camera (hero.data.camera)."""
    jpath = Path(jpath)
    meta = read_json(jpath)
    root = jpath.parent
    files, poses, cam = existing_frames(jpath, meta)
    lens = lens_from(cam, jpath)
    idx = list(range(len(files)))
    if len(files) > 1:
        test = idx[::TEST_EVERY]
        idx = test if split in ("val", "test") else [i for i in idx if i not in set(test)]
    files = [files[i] for i in idx]
    poses = [poses[i] for i in idx]
    sizes_ = [image_size(f) for f in files]
    check_same_size(sizes_, files)
    w0, h0 = full_size(jpath, cam, files[0])
    fx, fy, cx, cy = intrinsics(cam, jpath, w0, h0)
    w, h = scaled_size((w0, h0), downscale, files[0])
    sx, sy = w / w0, h / h0
    fx, fy, cx, cy = fx * sx, fy * sy, cx * sx, cy * sy
    imgs, alpha = stack_images(files, (w, h), True)
    if not lens.pinhole:
        fx, fy = undistort(imgs, alpha, fx, fy, cx, cy, lens, jpath)
    scale = json_number(meta, "scale", jpath, default=0.33, positive=True)
    offset = meta.get("offset", [0.5, 0.5, 0.5])
    if isinstance(offset, int | float) and not isinstance(offset, bool):
        offset = [offset] * 3  # instant-ngp takes a scalar offset too
    if not isinstance(offset, list) or len(offset) != 3:
        raise DataError(jpath, f"'offset' is {json.dumps(offset)[:60]}, expected 3 numbers")
    offset = np.array([json_number({"offset": o}, "offset", jpath) for o in offset], np.float32)
    aabb_scale = json_number(meta, "aabb_scale", jpath, default=1, positive=True)
    centre = (0.5 - offset) / scale
    half = 0.5 * aabb_scale / scale
    aabb = np.stack([centre - half, centre + half]).astype(np.float32)
    return Scene(imgs, np.stack(poses), fx, fy, cx, cy, aabb, white_background=True,
                 near=0.05, far=1e10, name=root.name, files=[str(f) for f in files], alpha=alpha)
