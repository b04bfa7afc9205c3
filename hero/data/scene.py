"""The scene container every loader returns, and format detection."""

from __future__ import annotations

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


def read_image(path: Path, size: tuple[int, int] | None, white_background: bool) -> np.ndarray:
    """Read an image as uint8 RGB [H, W, 3], composite RGBA over white, resize to size=(W, H)."""
    return read_rgba(path, size, white_background)[0]


def read_rgba(path: Path, size: tuple[int, int] | None, white_background: bool):
    """(uint8 RGB [H, W, 3] composited over the background, uint8 alpha [H, W] or None)."""
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
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from None
    if arr.shape[-1] == 4:
        rgb = arr[..., :3].astype(np.float32) / 255.0
        alpha = arr[..., 3:].astype(np.float32) / 255.0
        bg = 1.0 if white_background else 0.0
        rgb = rgb * alpha + bg * (1.0 - alpha)
        return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), arr[..., 3].copy()
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


def pose_matrix(value, path: Path, what: str) -> np.ndarray:
    """A 3x4 or 4x4 pose from JSON, as float32 [3, 4]; anything else is a DataError."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(path, f"{what}: pose matrix is not numeric") from None
    if m.shape not in ((4, 4), (3, 4)):
        raise DataError(path, f"{what}: pose matrix has shape {list(m.shape)}, expected 4x4 or 3x4")
    if not np.all(np.isfinite(m)):
        raise DataError(path, f"{what}: pose matrix has non-finite entries")
    return m[:3, :4].astype(np.float32)


def stack_images(files: list[Path], size: tuple[int, int], white_background: bool):
    """Images [N, H, W, 3] and alpha [N, H, W] (None unless every image has an alpha channel)."""
    pairs = [read_rgba(f, size, white_background) for f in files]
    imgs = np.stack([p[0] for p in pairs])
    alpha = np.stack([p[1] for p in pairs]) if all(p[1] is not None for p in pairs) else None
    return imgs, alpha


def check_same_size(sizes: list[tuple[int, int]], files: list[Path]) -> None:
    for s, f in zip(sizes, files, strict=True):
        if s != sizes[0]:
            raise DataError(f, f"image is {s[0]}x{s[1]} but {files[0].name} is {sizes[0][0]}x{sizes[0][1]}"
                            " (images of one scene must have the same size)")


def load_scene(path: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load a split from a folder in any supported format (detected from its files)."""
    from hero.data import blender, llff, ngp

    p = Path(path)
    if not p.exists():
        raise DataError(p, "scene path does not exist")
    if p.is_file() and p.suffix == ".json":
        return ngp.load_ngp(p, split, downscale)
    if (p / "transforms_train.json").is_file():
        return blender.load_blender(p, split, downscale)
    if (p / "poses_bounds.npy").is_file():
        return llff.load_llff(p, split, downscale)
    if (p / "transforms.json").is_file():
        return ngp.load_ngp(p / "transforms.json", split, downscale)
    raise DataError(p, "no scene found (expected transforms_train.json, poses_bounds.npy or transforms.json)")
