"""NeRF-synthetic (Blender) format: transforms_{split}.json + RGBA PNGs composited on white."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hero.data.errors import DataError
from hero.data.scene import Scene, check_same_size, image_size, pose_matrix, stack_images

BLENDER_BOUND = 1.5  # the NeRF-synthetic objects lie inside [-1.5, 1.5]^3


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object at the top level")
    return data


def frame_image_path(root: Path, file_path: str, default_ext: str = ".png") -> Path:
    p = root / file_path
    if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".exr", ".bmp", ".tif", ".tiff"):
        p = p.with_name(p.name + default_ext)
    return p


def load_blender(root: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load one split of a NeRF-synthetic scene; downscale divides width and height (integer)."""
    root = Path(root)
    jpath = root / f"transforms_{split}.json"
    meta = read_json(jpath)
    if "camera_angle_x" not in meta:
        raise DataError(jpath, "missing 'camera_angle_x'")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(jpath, "missing or empty 'frames' list")
    files, poses = [], []
    for i, fr in enumerate(frames):
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(jpath, f"frame {i} lacks 'file_path' or 'transform_matrix'")
        files.append(frame_image_path(root, fr["file_path"]))
        poses.append(pose_matrix(fr["transform_matrix"], jpath, f"frame {i} ({fr['file_path']})"))
    sizes = [image_size(f) for f in files]
    check_same_size(sizes, files)
    w0, h0 = sizes[0]
    w, h = w0 // max(1, downscale), h0 // max(1, downscale)
    imgs, alpha = stack_images(files, (w, h), True)
    focal = 0.5 * w / math.tan(0.5 * float(meta["camera_angle_x"]))
    b = BLENDER_BOUND
    return Scene(imgs, np.stack(poses), focal, focal, w / 2.0, h / 2.0,
                 np.array([[-b, -b, -b], [b, b, b]], np.float32), white_background=True,
                 near=2.0, far=6.0, name=root.name, files=[str(f) for f in files], alpha=alpha)
