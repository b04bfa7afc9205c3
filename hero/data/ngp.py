"""instant-ngp transforms.json: fl_x, fl_y, cx, cy, aabb_scale; frames whose image is missing are skipped."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from hero.data.blender import frame_image_path, read_json
from hero.data.errors import DataError
from hero.data.scene import Scene, check_same_size, image_size, pose_matrix, stack_images

TEST_EVERY = 8  # a single transforms.json: every 8th frame is held out for val/test


def intrinsics(meta: dict, jpath: Path, w: int, h: int) -> tuple[float, float, float, float]:
    if "fl_x" in meta:
        fx = float(meta["fl_x"])
        fy = float(meta.get("fl_y", fx))
    elif "camera_angle_x" in meta:
        fx = 0.5 * w / math.tan(0.5 * float(meta["camera_angle_x"]))
        fy = 0.5 * h / math.tan(0.5 * float(meta["camera_angle_y"])) if "camera_angle_y" in meta else fx
    else:
        raise DataError(jpath, "no focal length (expected 'fl_x' or 'camera_angle_x')")
    return fx, fy, float(meta.get("cx", w / 2.0)), float(meta.get("cy", h / 2.0))


def load_ngp(jpath: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load an instant-ngp scene. World box: instant-ngp maps x -> scale*x + offset into [0,1]^3,
    enlarged aabb_scale times about its centre (defaults scale=0.33, offset=0.5)."""
    jpath = Path(jpath)
    meta = read_json(jpath)
    root = jpath.parent
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(jpath, "missing or empty 'frames' list")
    files, poses, missing = [], [], []
    for i, fr in enumerate(frames):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(jpath, f"frame {i} lacks 'file_path' or 'transform_matrix'")
        f = frame_image_path(root, fr["file_path"])
        if not f.is_file():
            missing.append(str(f))
            continue
        files.append(f)
        poses.append(pose_matrix(fr["transform_matrix"], jpath, f"frame {i} ({fr['file_path']})"))
    if missing:
        warnings.warn(f"{jpath}: skipping {len(missing)} frame(s) whose image is missing, e.g. {missing[0]}",
                      stacklevel=2)
    if not files:
        raise DataError(jpath, "no frame has an existing image file")
    idx = list(range(len(files)))
    if len(files) > 1:
        test = idx[::TEST_EVERY]
        idx = test if split in ("val", "test") else [i for i in idx if i not in set(test)]
    files = [files[i] for i in idx]
    poses = [poses[i] for i in idx]
    sizes = [image_size(f) for f in files]
    check_same_size(sizes, files)
    w0, h0 = int(meta.get("w", sizes[0][0])), int(meta.get("h", sizes[0][1]))
    if (w0, h0) != sizes[0]:
        raise DataError(files[0], f"image is {sizes[0][0]}x{sizes[0][1]} but {jpath.name} says {w0}x{h0}")
    fx, fy, cx, cy = intrinsics(meta, jpath, w0, h0)
    d = max(1, downscale)
    w, h = w0 // d, h0 // d
    sx, sy = w / w0, h / h0
    imgs, alpha = stack_images(files, (w, h), True)
    scale = float(meta.get("scale", 0.33))
    offset = np.asarray(meta.get("offset", [0.5, 0.5, 0.5]), np.float32)
    aabb_scale = float(meta.get("aabb_scale", 1))
    centre = (0.5 - offset) / scale
    half = 0.5 * aabb_scale / scale
    aabb = np.stack([centre - half, centre + half]).astype(np.float32)
    return Scene(imgs, np.stack(poses), fx * sx, fy * sy, cx * sx, cy * sy, aabb, white_background=True,
                 near=0.05, far=1e10, name=root.name, files=[str(f) for f in files], alpha=alpha)
