"""NeRF-synthetic (Blender) format: transforms_{split}.json + RGBA PNGs composited on white."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hero.cli import read_file
from hero.data.camera import lens_from, undistort
from hero.data.errors import DataError
from hero.data.scene import (
    Scene,
    check_same_size,
    image_size,
    json_number,
    pose_matrix,
    scaled_size,
    stack_images,
)

BLENDER_BOUND = 1.5  # the NeRF-synthetic objects lie inside [-1.5, 1.5]^3
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".bmp", ".tif", ".tiff")


def read_json(path: Path) -> dict:
    data = read_file(path, "a JSON file", DataError, json.loads, "JSON")
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object at the top level")
    return data


def frame_image_path(root: Path, file_path: str, default_ext: str = ".png") -> Path:
    p = root / file_path
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        p = p.with_name(p.name + default_ext)
    return p


def frame_list(meta: dict, jpath: Path) -> list[tuple[str, dict]]:
    """[(file_path, frame)] of a transforms file's 'frames', each checked for a file_path and a transform_matrix."""
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(jpath, "missing or empty 'frames' list")
    out = []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DataError(jpath, f"frame {i} lacks 'file_path' or 'transform_matrix'")
        if not isinstance(fr["file_path"], str) or not fr["file_path"]:
            raise DataError(jpath, f"frame {i}: 'file_path' is {json.dumps(fr['file_path'])[:60]}, expected a path")
        out.append((fr["file_path"], fr))
    return out


def split_frames(root: Path, split: str) -> tuple[Path, dict, list[Path], list[np.ndarray]]:
    """(json path, its contents, image files, poses) of one split."""
    jpath = root / f"transforms_{split}.json"
    meta = read_json(jpath)
    json_number(meta, "camera_angle_x", jpath, positive=True, below=math.pi)
    files, poses = [], []
    for i, (fp, fr) in enumerate(frame_list(meta, jpath)):
        files.append(frame_image_path(root, fp))
        poses.append(pose_matrix(fr["transform_matrix"], jpath, f"frame {i} ({fp})"))
    return jpath, meta, files, poses


def sizes(root: str | Path) -> dict[int, tuple[int, int]]:
    """{1: (W, H)} of the training images (no prebuilt smaller copies in this format)."""
    _, _, files, _ = split_frames(Path(root), "train")
    return {1: image_size(files[0])}


def load(root: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load one split of a NeRF-synthetic scene; downscale divides width and height (integer)."""
    root = Path(root)
    jpath, meta, files, poses = split_frames(root, split)
    sizes_ = [image_size(f) for f in files]
    check_same_size(sizes_, files)
    w, h = scaled_size(sizes_[0], downscale, files[0])
    imgs, alpha = stack_images(files, (w, h), True)
    fx = fy = 0.5 * w / math.tan(0.5 * float(meta["camera_angle_x"]))
    lens = lens_from(meta, jpath)
    if not lens.pinhole:
        fx, fy = undistort(imgs, alpha, fx, fy, w / 2.0, h / 2.0, lens, jpath)
    b = BLENDER_BOUND
    return Scene(imgs, np.stack(poses), fx, fy, w / 2.0, h / 2.0,
                 np.array([[-b, -b, -b], [b, b, b]], np.float32), white_background=True,
                 near=2.0, far=6.0, name=root.name, files=[str(f) for f in files], alpha=alpha)

