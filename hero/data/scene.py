"""The scene container every loader returns, format detection, the downscale factor, checked JSON fields."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hero.data.errors import DataError


@dataclass
class Scene:
    """Images and cameras of one split. Cameras look down -z with +y up (OpenGL / Blender)."""

    images: np.ndarray  # [N, H, W, 3] uint8, RGB (alpha already composited over the background)
    c2w: np.ndarray  # [N, 3, 4] float32 camera-to-world
    fx: float
    fy: float
    cx: float
    cy: float
    aabb: np.ndarray  # [2, 3] float32: scene box min, max (world units, or NDC for LLFF)
    white_background: bool = True
    ndc: bool = False  # LLFF forward-facing: rays are mapped to normalised device coordinates
    near: float = 0.0
    far: float = 1e10
    name: str = ""
    files: list[str] = field(default_factory=list)
    alpha: np.ndarray | None = None  # [N, H, W] uint8 coverage of RGBA images (None: opaque images)

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices) -> Scene:
        idx = list(indices)
        return Scene(self.images[idx], self.c2w[idx], self.fx, self.fy, self.cx, self.cy, self.aabb,
                     self.white_background, self.ndc, self.near, self.far, self.name,
                     [self.files[i] for i in idx] if self.files else [],
                     None if self.alpha is None else self.alpha[idx])


def read_rgba(path: Path, size: tuple[int, int] | None, white_background: bool):
    """(uint8 RGB [H, W, 3] composited over the background (white or black), uint8 alpha [H, W] or None),
    resized to size=(W, H) with a box filter."""
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as im:
            im.load()
            if size is not None and im.size != size:
                im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB").resize(size, Image.Resampling.BOX)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from None
    if arr.shape[-1] == 4:  # over the background in integers: (c*a + bg*(255 - a)) / 255, rounded; fits uint16
        alpha = arr[..., 3:].astype(np.uint16)
        bg = 255 if white_background else 0
        rgb = (arr[..., :3] * alpha + np.uint16(bg) * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8), arr[..., 3].copy()
    return arr, None


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file without decoding it."""
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from None


def is_number(v) -> bool:
    """A JSON number (bool is not one)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def pose_matrix(value, path: Path, what: str) -> np.ndarray:
    """A 3x4 or 4x4 pose from JSON (a list of rows of numbers), as float32 [3, 4]; anything else is a DataError."""
    if not isinstance(value, list) or not all(isinstance(r, list) and all(map(is_number, r)) for r in value):
        raise DataError(path, f"{what}: pose matrix is not numeric ({json.dumps(value)[:60]}); expected 4 rows "
                              "(or 3) of 4 numbers")
    if len(value) not in (3, 4) or any(len(r) != 4 for r in value):
        cols = sorted({len(r) for r in value})
        shape = f"shape {[len(value), *cols]}" if len(cols) <= 1 else f"{len(value)} rows of {cols} numbers"
        raise DataError(path, f"{what}: pose matrix has {shape}, expected 4x4 or 3x4")
    m = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        raise DataError(path, f"{what}: pose matrix has non-finite entries")
    pose_check(m, path, what)
    return m[:3, :4].astype(np.float32)


def stack_images(files: list[Path], size: tuple[int, int], white_background: bool):
    """Images [N, H, W, 3] uint8 and alpha [N, H, W] uint8 (None unless every image has an alpha channel),
    filled in place: the peak memory is the scene's uint8 size plus one image."""
    w, h = size
    imgs = np.empty((len(files), h, w, 3), np.uint8)
    alpha = np.empty((len(files), h, w), np.uint8)
    opaque = False
    for i, f in enumerate(files):
        rgb, a = read_rgba(f, size, white_background)
        imgs[i] = rgb
        if a is None:
            opaque = True
        else:
            alpha[i] = a
    return imgs, None if opaque else alpha


def check_same_size(sizes: list[tuple[int, int]], files: list[Path]) -> None:
    for s, f in zip(sizes, files, strict=True):
        if s != sizes[0]:
            raise DataError(f, f"image is {s[0]}x{s[1]} but {files[0].name} is {sizes[0][0]}x{sizes[0][1]}"
                            " (images of one scene must have the same size)")


def json_number(d: dict, key: str, path: Path, where: str = "", default=None, positive: bool = False,
                below: float | None = None, integer: bool = False) -> float:
    """d[key] as a finite float (bool is not a number), > 0 with `positive`, < `below` when given, a whole
    number with `integer`; `default` if absent and a default is given."""
    if key not in d:
        if default is None:
            raise DataError(path, f"{where}missing {key!r}")
        return float(default)
    v = d[key]
    if not is_number(v) or not math.isfinite(v) or (positive and v <= 0) \
            or (below is not None and v >= below) or (integer and v != int(v)):
        need = "a positive integer" if integer and positive else "an integer" if integer else \
            "a positive number" if positive else "a finite number"
        if below is not None:
            need += f" below {below:g}"
        raise DataError(path, f"{where}{key!r} is {json.dumps(v)[:60]}, expected {need}")
    return float(v)


def pose_check(m: np.ndarray, path: Path, what: str) -> None:
    """A camera pose's 3x3 rotation part must span three dimensions (a zero or flat matrix gives no rays)."""
    if abs(float(np.linalg.det(np.asarray(m, np.float64)[:3, :3]))) < 1e-6:
        raise DataError(path, f"{what}: the pose's 3x3 rotation part is singular (determinant ~0); expected a "
                              "rotation (determinant +-1)")


AUTO = "auto"  # the downscale that picks the factor from the image size (choose_downscale)


def check_downscale(downscale) -> int:
    """A downscale factor must be an integer >= 1 ('auto' is resolved by choose_downscale first)."""
    if isinstance(downscale, bool) or not isinstance(downscale, int | np.integer) or downscale < 1:
        raise ValueError(f"--downscale {downscale}: expected an integer >= 1 or {AUTO!r}")
    return int(downscale)


def scaled_size(size: tuple[int, int], downscale: int, path: Path) -> tuple[int, int]:
    """(W, H) // downscale; a DataError naming the flag when nothing would be left."""
    w, h = size[0] // downscale, size[1] // downscale
    if w < 1 or h < 1:
        raise DataError(path, f"--downscale {downscale} is too large for its {size[0]}x{size[1]} images "
                              f"(at most {min(size)})")
    return w, h


def detect(path: str | Path):
    """(format module, the path it loads): the format is recognised from the folder's files."""
    from hero.data import blender, llff, ngp

    p = Path(path)
    if not p.exists():
        raise DataError(p, "scene path does not exist")
    if p.is_file():
        if p.suffix == ".json":
            return ngp, p
        raise DataError(p, "is a file; expected a scene folder (Blender, LLFF or instant-ngp) or a transforms.json")
    if (p / "transforms_train.json").is_file():
        return blender, p
    if (p / "poses_bounds.npy").is_file():
        return llff, p
    if (p / "transforms.json").is_file():
        return ngp, p / "transforms.json"
    raise DataError(p, "no scene found (expected transforms_train.json, poses_bounds.npy or transforms.json)")


def load_scene(path: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load a split from a folder in any supported format (detected from its files)."""
    fmt, p = detect(path)
    return fmt.load(p, split, check_downscale(downscale))


def choose_downscale(path: str | Path, max_side: int) -> tuple[int, str]:
    """The smallest factor, a power of two or one of LLFF's prebuilt images_N/, that brings the longest
    image side to at most `max_side` pixels; and a phrase saying what it gives."""
    fmt, p = detect(path)
    sizes = fmt.sizes(p)  # {factor: (W, H)}: 1 is the full size, others are prebuilt folders
    full = sizes[1]
    candidates = sorted(set(sizes) | {2 ** k for k in range(int(math.log2(max(full))) + 1)})
    for d in candidates:
        w, h = sizes.get(d, (full[0] // d, full[1] // d))
        if max(w, h) <= max_side or d == candidates[-1]:
            source = "full size" if d == 1 else f"images_{d}/" if d in sizes else f"{full[0]}x{full[1]} / {d}"
            return d, f"{w}x{h} ({source})"
    raise AssertionError("unreachable: the last candidate is always taken")
