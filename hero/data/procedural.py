"""The project's own scene: textured primitives ray-traced analytically, written in the Blender format.

Z is up (as in NeRF-synthetic); everything lies inside [-1, 1]^3. Shading is diffuse with a fixed
light, so colour does not depend on the view direction. Images are RGBA PNGs (alpha = coverage).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

CAMERA_ANGLE_X = 0.6911112070083618  # the NeRF-synthetic field of view
RADIUS = 4.0
LIGHT = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])
MISS = np.inf


def _sphere(o, d, centre, r):
    oc = o - centre
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - r * r
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc > 0) & (t > 1e-6), t, MISS)
    n = (o + t[:, None] * d - centre) / r
    return t, n


def _box(o, d, lo, hi):
    inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
    tn, tf = tmin.max(-1), tmax.min(-1)
    t = np.where((tn <= tf) & (tn > 1e-6), tn, MISS)
    axis = tmin.argmax(-1)
    n = np.zeros_like(o)
    n[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
    return t, n


def _checker(p, freq):
    return (np.floor(p * freq).astype(np.int64).sum(-1) % 2).astype(np.float64)[:, None]


def shade(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Reference renderer: RGBA [R, 4] in [0, 1] for rays (o, d unit) against the scene."""
    with np.errstate(invalid="ignore"):
        return _shade(o, d)


def _shade(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    hits = [
        _sphere(o, d, np.array([0.0, 0.0, 0.45]), 0.45),
        _box(o, d, np.array([-0.9, -0.9, -0.2]), np.array([0.9, 0.9, 0.0])),
        _sphere(o, d, np.array([0.55, 0.5, 0.25]), 0.25),
        _box(o, d, np.array([-0.75, -0.7, 0.0]), np.array([-0.25, -0.2, 0.5])),
    ]
    ts = np.stack([h[0] for h in hits], -1)
    which = ts.argmin(-1)
    t = ts.min(-1)
    hit = np.isfinite(t)
    rows = np.arange(len(o))
    n = np.stack([h[1] for h in hits], 1)[rows, which]
    p = o + np.where(hit, t, 0.0)[:, None] * d
    alb = np.zeros_like(o)
    # 0: sphere with a latitude-longitude checker (red / yellow)
    q = p - np.array([0.0, 0.0, 0.45])
    lon = np.arctan2(q[:, 1], q[:, 0])
    lat = np.arcsin(np.clip(q[:, 2] / 0.45, -1, 1))
    ck = ((np.floor(lon / (math.pi / 6)) + np.floor(lat / (math.pi / 6))) % 2)[:, None]
    alb = np.where((which == 0)[:, None], ck * [0.9, 0.15, 0.1] + (1 - ck) * [0.95, 0.85, 0.2], alb)
    # 1: slab with stripes along x (blue / white)
    st = (np.sin(p[:, 0] * 18.0) > 0)[:, None].astype(np.float64)
    alb = np.where((which == 1)[:, None], st * [0.15, 0.3, 0.8] + (1 - st) * [0.9, 0.9, 0.85], alb)
    # 2: small sphere with a height gradient (green)
    g = np.clip((p[:, 2] - 0.0) / 0.5, 0, 1)[:, None]
    alb = np.where((which == 2)[:, None], (1 - g) * [0.05, 0.45, 0.1] + g * [0.6, 0.95, 0.5], alb)
    # 3: cube with a 3-D checker (orange / purple)
    c3 = _checker(p + 1.0, 8.0)
    alb = np.where((which == 3)[:, None], c3 * [0.95, 0.55, 0.1] + (1 - c3) * [0.45, 0.2, 0.6], alb)
    light = 0.35 + 0.65 * np.clip((n * LIGHT).sum(-1), 0, 1)[:, None]
    rgb = np.clip(alb * light, 0, 1)
    return np.concatenate([np.where(hit[:, None], rgb, 0.0), hit[:, None].astype(np.float64)], -1)


def look_at(eye: np.ndarray, target=(0.0, 0.0, 0.2), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    z = eye - np.asarray(target)
    z = z / np.linalg.norm(z)
    x = np.cross(np.asarray(up), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


def camera_poses(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        az = 2 * math.pi * (i + rng.uniform(0, 1)) / n
        el = math.radians(rng.uniform(15, 65))
        eye = RADIUS * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        out.append(look_at(eye))
    return out


def render_view(c2w: np.ndarray, size: int, supersample: int = 2) -> np.ndarray:
    """Reference render of one view: RGBA float [size, size, 4] (supersampled box filter)."""
    s = size * supersample
    focal = 0.5 * s / math.tan(0.5 * CAMERA_ANGLE_X)
    j, i = np.meshgrid(np.arange(s) + 0.5, np.arange(s) + 0.5, indexing="ij")
    d = np.stack([(i - s / 2) / focal, -(j - s / 2) / focal, -np.ones_like(i)], -1).reshape(-1, 3)
    d = d @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    rgba = shade(o, d).reshape(size, supersample, size, supersample, 4)
    a = rgba[..., 3:].mean((1, 3))
    rgb = rgba[..., :3].sum((1, 3)) / np.maximum(rgba[..., 3:].sum((1, 3)), 1e-9)  # straight alpha
    return np.concatenate([rgb, a], -1)


def default_folder() -> Path:
    """Where `--data procedural` builds the scene: $HERO_CACHE/procedural, else
    $XDG_CACHE_HOME/hero/procedural, else ~/.cache/hero/procedural (absolute: a checkpoint that
    records it works from any current folder)."""
    root = os.environ.get("HERO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hero"
    return (Path(root) / "procedural").absolute()


def build(out: str | Path, size: int = 100, n_train: int = 60, n_val: int = 8, n_test: int = 16) -> Path:
    """Write the scene in the Blender format into out/ (skipped if the same build is already there)."""
    out = Path(out)
    stamp = {"size": size, "n_train": n_train, "n_val": n_val, "n_test": n_test, "version": 1}
    sp = out / "scene.json"
    if sp.is_file() and json.loads(sp.read_text()) == stamp and (out / "transforms_test.json").is_file():
        return out
    from hero import atomic

    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2), ("test", n_test, 3)):
        frames = []
        for k, pose in enumerate(camera_poses(n, seed)):
            rgba = render_view(pose, size)
            atomic.save_image(out / split / f"r_{k}.png",
                              Image.fromarray(np.clip(rgba * 255 + 0.5, 0, 255).astype(np.uint8), "RGBA"))
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": pose.tolist()})
        atomic.write_json(out / f"transforms_{split}.json", {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames})
    atomic.write(sp, json.dumps(stamp))  # last: a build cut short is redone
    return out
