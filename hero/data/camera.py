"""Lens models of instant-ngp and nerfstudio transforms.json files, and undistortion to a pinhole camera.

COLMAP-made transforms.json files describe the lens with `k1`, `k2`, `k3`, `k4`, `p1`, `p2`, and with
`camera_model` (nerfstudio: OPENCV, OPENCV_FISHEYE, ...) or `is_fisheye` (instant-ngp). Every ray in
this project comes from a pinhole camera (hero.data.rays), so a distorted capture is resampled once,
when it is loaded, into the pinhole image of the same camera: each output pixel's pinhole ray is
pushed through the lens model (`Lens.distort`, the forward model, exact) to the point of the captured
image that saw it, and the image is read there (bilinear). The pinhole focal length is scaled so that
every output pixel falls inside the captured image (the border of a barrel-distorted image, which no
pinhole rectangle holds, is cropped). This is the model instant-ngp applies per ray, applied per pixel
once instead of per ray at every step.

Models, in normalised image coordinates (x, y) = ((u - cx) / fx, (v - cy) / fy), y down:
  OpenCV radial-tangential (OPENCV and its subsets PINHOLE, SIMPLE_RADIAL, RADIAL; `k4` as nerfstudio's
  r^8 term): r2 = x^2 + y^2, radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4,
  x_d = x radial + 2 p1 x y + p2 (r2 + 2 x^2), y_d = y radial + p1 (r2 + 2 y^2) + 2 p2 x y.
  OpenCV fisheye (OPENCV_FISHEYE, RADIAL_FISHEYE, SIMPLE_RADIAL_FISHEYE, or is_fisheye): theta =
  atan(r), theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8), (x_d, y_d) =
  (theta_d / r) (x, y).
Any other lens (instant-ngp's f-theta, lat-long, equirectangular, a rolling shutter; nerfstudio's
EQUIRECTANGULAR and the rest) is refused with the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hero.data.errors import DataError
from hero.data.scene import is_number

OPENCV_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
FISHEYE_MODELS = ("SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "OPENCV_FISHEYE")
COEFFICIENTS = ("k1", "k2", "k3", "k4", "p1", "p2")
UNSUPPORTED = ("ftheta_p0", "latlong", "equirectangular", "rolling_shutter")  # instant-ngp lens modes
LENS_KEYS = ("camera_model", "is_fisheye", *COEFFICIENTS, *UNSUPPORTED)
ZOOM_RANGE = (1 / 16, 16.0)  # pinhole focal / captured focal, searched for the largest view inside the image
CHUNK_ROWS = 256  # rows resampled at once (bounds the float temporaries of a large image)


@dataclass(frozen=True)
class Lens:
    fisheye: bool = False
    k: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    p: tuple[float, float] = (0.0, 0.0)

    @property
    def pinhole(self) -> bool:
        return not self.fisheye and not any(self.k) and not any(self.p)

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised pinhole coordinates -> where the lens puts them (normalised, y down)."""
        k1, k2, k3, k4 = self.k
        r2 = x * x + y * y
        if self.fisheye:
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
            scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
            return x * scale, y * scale
        p1, p2 = self.p
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)

    def radial_slope(self, r: np.ndarray) -> np.ndarray:
        """d(distorted radius)/d(radius) without the tangential terms: the lens folds over where it is <= 0."""
        k1, k2, k3, k4 = self.k
        if self.fisheye:
            t = np.arctan(r)
            t2 = t * t
            return (1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))) / (1 + r * r)
        r2 = r * r
        return 1 + r2 * (3 * k1 + r2 * (5 * k2 + r2 * (7 * k3 + r2 * 9 * k4)))


def lens_from(cam: dict, path: Path) -> Lens:
    """The lens a transforms.json (its top level merged with a frame's overrides) describes."""
    for key in UNSUPPORTED:
        v = cam.get(key)
        if key in cam and v not in (None, False, 0) and not (isinstance(v, list) and not any(v)):
            raise DataError(path, f"{key!r}: this lens model is not supported (only pinhole, OpenCV "
                                  "radial-tangential and OpenCV fisheye); undistort the images to a pinhole camera")
    coeffs = {}
    for key in COEFFICIENTS:
        v = cam.get(key, 0.0)
        if not is_number(v) or not np.isfinite(v):
            raise DataError(path, f"{key!r} is {json.dumps(v)[:60]}, expected a finite number")
        coeffs[key] = float(v)
    model = cam.get("camera_model")
    fisheye = cam.get("is_fisheye", False)
    if not isinstance(fisheye, bool):
        raise DataError(path, f"'is_fisheye' is {json.dumps(fisheye)[:60]}, expected true or false")
    if model is not None:
        if model not in OPENCV_MODELS + FISHEYE_MODELS:
            raise DataError(path, f"'camera_model' {model} is not supported (choose one of "
                                  f"{', '.join(OPENCV_MODELS + FISHEYE_MODELS)}); undistort the images first")
        if "is_fisheye" in cam and fisheye != (model in FISHEYE_MODELS):
            raise DataError(path, f"'camera_model' {model} contradicts 'is_fisheye' {json.dumps(fisheye)}")
        fisheye = model in FISHEYE_MODELS
    if fisheye and (coeffs["p1"] or coeffs["p2"]):
        raise DataError(path, "'p1'/'p2' (tangential distortion) are not part of the OpenCV fisheye model")
    return Lens(fisheye, (coeffs["k1"], coeffs["k2"], coeffs["k3"], coeffs["k4"]), (coeffs["p1"], coeffs["p2"]))


def source_pixels(lens: Lens, u: np.ndarray, v: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                  zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Where pinhole pixel indices (u, v), focal zoom * (fx, fy), read the captured image (pixel indices)."""
    xd, yd = lens.distort((u + 0.5 - cx) / (zoom * fx), (v + 0.5 - cy) / (zoom * fy))
    return fx * xd + cx - 0.5, fy * yd + cy - 0.5


def pinhole_zoom(lens: Lens, w: int, h: int, fx: float, fy: float, cx: float, cy: float, path: Path) -> float:
    """The smallest focal scale (the widest pinhole view) whose every pixel reads inside the captured image."""
    u = np.concatenate([np.arange(w), np.arange(w), np.zeros(h), np.full(h, w - 1)]).astype(np.float64)
    v = np.concatenate([np.zeros(w), np.full(w, h - 1), np.arange(h), np.arange(h)]).astype(np.float64)

    def inside(zoom: float) -> bool:
        sx, sy = source_pixels(lens, u, v, fx, fy, cx, cy, zoom)
        return bool(np.all((sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)))

    lo, hi = ZOOM_RANGE
    if not inside(hi):
        raise DataError(path, "the lens model maps the image centre outside the image: check 'cx', 'cy' and the "
                              "distortion coefficients")
    if not inside(lo):
        for _ in range(40):
            mid = (lo * hi) ** 0.5
            lo, hi = (lo, mid) if inside(mid) else (mid, hi)
        lo = hi
    corners_r = np.hypot((np.array([0.5, w - 0.5]) - cx) / (lo * fx), (np.array([0.5, h - 0.5]) - cy) / (lo * fy))
    r = np.linspace(0.0, float(np.max(corners_r)), 512)
    if np.any(lens.radial_slope(r) <= 0):
        raise DataError(path, f"the distortion {dict(zip(COEFFICIENTS, (*lens.k, *lens.p), strict=True))} folds over "
                              "inside the image (not invertible): check the coefficients")
    return lo


def bilinear(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """img [H, W, ...] read at pixel coordinates (sx, sy) inside it, bilinearly; same dtype as img."""
    h, w = img.shape[:2]
    x0 = np.clip(np.floor(sx).astype(np.int64), 0, w - 2 if w > 1 else 0)
    y0 = np.clip(np.floor(sy).astype(np.int64), 0, h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = (sx - x0).astype(np.float32), (sy - y0).astype(np.float32)
    if img.ndim == 3:
        ax, ay = ax[..., None], ay[..., None]
    top = img[y0, x0] * (1 - ax) + img[y0, x1] * ax
    bottom = img[y1, x0] * (1 - ax) + img[y1, x1] * ax
    out = top * (1 - ay) + bottom * ay
    if img.dtype == np.uint8:
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return out.astype(img.dtype)


def undistort(images: np.ndarray, alpha: np.ndarray | None, fx: float, fy: float, cx: float, cy: float, lens: Lens,
              path: Path) -> tuple[float, float]:
    """Resample images [N, H, W, 3] (and alpha [N, H, W]) in place into the pinhole camera of the same
    principal point; returns its focal lengths (fx, fy) * zoom. Extra memory: the map (8 bytes a pixel)
    and one image."""
    n, h, w = images.shape[:3]
    zoom = pinhole_zoom(lens, w, h, fx, fy, cx, cy, path)
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    sx, sy = (a.astype(np.float32) for a in source_pixels(lens, u, v, fx, fy, cx, cy, zoom))
    del u, v
    for stack in (images, alpha) if alpha is not None else (images,):
        for i in range(n):
            src = stack[i].copy()
            for r0 in range(0, h, CHUNK_ROWS):
                stack[i, r0:r0 + CHUNK_ROWS] = bilinear(src, sx[r0:r0 + CHUNK_ROWS], sy[r0:r0 + CHUNK_ROWS])
    return fx * zoom, fy * zoom
