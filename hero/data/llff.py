"""LLFF forward-facing scenes: poses_bounds.npy with images/ or images_N/; rays are taken to NDC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hero.data.errors import DataError
from hero.data.rays import ndc_box
from hero.data.scene import Scene, check_same_size, image_size, pose_check, scaled_size, stack_images

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
TEST_EVERY = 8  # LLFF convention: every 8th image is held out


def normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def average_pose(poses: np.ndarray) -> np.ndarray:
    centre = poses[:, :3, 3].mean(0)
    z = normalize(poses[:, :3, 2].sum(0))
    up = poses[:, :3, 1].sum(0)
    x = normalize(np.cross(up, z))
    y = np.cross(z, x)
    return np.stack([x, y, z, centre], 1)


def recenter(poses: np.ndarray) -> np.ndarray:
    """Express the [N, 3, 4] poses relative to their average pose."""
    bottom = np.array([0, 0, 0, 1.0])
    avg = np.concatenate([average_pose(poses), bottom[None]], 0)
    full = np.concatenate([poses, np.broadcast_to(bottom, (len(poses), 1, 4))], 1)
    return (np.linalg.inv(avg) @ full)[:, :3, :4]


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_EXTS)


def read_poses(root: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """(poses_bounds.npy path, poses [N, 3, 5] (3x4 pose, then h, w, focal), bounds [N, 2]), checked."""
    ppath = root / "poses_bounds.npy"
    if not ppath.is_file():
        raise DataError(ppath, "file is missing")
    if ppath.stat().st_size == 0:
        raise DataError(ppath, "is empty; expected an array of shape [N, 17] written by np.save")
    try:
        arr = np.load(ppath)
    except ValueError as exc:
        with open(ppath, "rb") as f:
            binary = f.read(6) == b"\x93NUMPY"
        why = ("not a binary .npy file (np.save writes one; this is text or a pickle)" if not binary else
               "holds Python objects, expected an array of numbers" if "allow_pickle" in str(exc) else
               "truncated or corrupt .npy file (np.save writes a whole one)")
        raise DataError(ppath, why) from None
    except (OSError, EOFError) as exc:
        raise DataError(ppath, f"unreadable or truncated .npy ({exc})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DataError(ppath, "holds an .npz archive, expected one array of shape [N, 17] (np.save, not np.savez)")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(ppath, f"holds {arr.dtype} values, expected real numbers (float64)")
    if arr.ndim != 2 or arr.shape[1] != 17 or len(arr) == 0:
        raise DataError(ppath, f"pose matrix has shape {list(arr.shape)}, expected [N, 17] (3x5 pose + 2 bounds)")
    if not np.all(np.isfinite(arr)):
        raise DataError(ppath, "has non-finite entries (NaN or inf)")
    poses = arr[:, :15].reshape(-1, 3, 5).astype(np.float64)
    bounds = arr[:, 15:].astype(np.float64)
    if np.any(bounds <= 0):
        raise DataError(ppath, "has a near/far bound <= 0 (the last two columns must be positive depths)")
    if np.any(bounds[:, 0] >= bounds[:, 1]):
        i = int(np.argmax(bounds[:, 0] >= bounds[:, 1]))
        raise DataError(ppath, f"row {i}: near bound {bounds[i, 0]:g} is not below far bound {bounds[i, 1]:g} "
                               "(columns 16 and 17 are near, then far)")
    if np.any(poses[:, :, 4] <= 0):
        raise DataError(ppath, "has an image height, width or focal length <= 0 (the pose's 5th column)")
    for i, m in enumerate(poses):
        pose_check(m, ppath, f"row {i}")
    return ppath, poses, bounds


def prebuilt(root: Path) -> dict[int, Path]:
    """LLFF's smaller copies of images/: {N: images_N/} for every images_N/ that holds images."""
    out = {}
    for p in root.glob("images_*"):
        n = p.name[len("images_"):]
        if p.is_dir() and n.isdigit() and int(n) > 1 and image_files(p):
            out[int(n)] = p
    return out


def sizes(root: str | Path) -> dict[int, tuple[int, int]]:
    """{1: the full size (images/, or the poses' h and w without it), N: size of images_N/}."""
    root = Path(root)
    _, poses, _ = read_poses(root)
    full = root / "images"
    out = {1: image_size(image_files(full)[0]) if full.is_dir() and image_files(full)
           else (int(poses[0, 1, 4]), int(poses[0, 0, 4]))}
    out.update({n: image_size(image_files(p)[0]) for n, p in prebuilt(root).items()})
    return out


def load(root: str | Path, split: str = "train", downscale: int = 1) -> Scene:
    """Load an LLFF scene; downscale N prefers images_N/ and otherwise resizes images/."""
    root = Path(root)
    ppath, poses, bounds = read_poses(root)
    d = downscale
    folder = prebuilt(root).get(d, root / "images")
    if not folder.is_dir():
        raise DataError(folder, f"image folder is missing (expected images/ or images_{d}/ beside {ppath.name})")
    files = image_files(folder)
    if len(files) != len(poses):
        raise DataError(folder, f"has {len(files)} images but {ppath.name} has {len(poses)} poses")
    sizes_ = [image_size(f) for f in files]
    check_same_size(sizes_, files)
    h_full, w_full, focal_full = poses[0, :, 4]
    w, h = sizes_[0]
    if abs(w / h - w_full / h_full) > 0.02 * w_full / h_full:
        raise DataError(files[0], f"image is {w}x{h} but {ppath.name} says {w_full:g}x{h_full:g} (width x height, "
                                  "from its 5th column: height, width, focal); the aspect ratios must agree")
    if folder.name == "images" and d > 1:
        w, h = scaled_size((w, h), d, files[0])
    focal = focal_full * w / w_full
    # LLFF stores [down, right, back]; convert to [right, up, back].
    poses = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], 2)
    scale = 1.0 / (bounds.min() * 0.75)  # nearest content ends up at depth ~1/0.75
    poses[:, :, 3] *= scale
    poses = recenter(poses)
    idx = list(range(len(files)))
    test = idx[::TEST_EVERY]
    idx = test if split in ("val", "test") else [i for i in idx if i not in set(test)] or idx
    imgs, _ = stack_images([files[i] for i in idx], (w, h), False)
    # The NDC box: every camera's rays, train and test (poses only), from the near plane to infinity.
    aabb = ndc_box(torch.from_numpy(poses[:, :, :4]), h, w, focal).numpy()
    return Scene(imgs, poses[idx].astype(np.float32), float(focal), float(focal), w / 2.0, h / 2.0, aabb,
                 white_background=False, ndc=True, near=0.0, far=1.0, name=root.name,
                 files=[str(files[i]) for i in idx])
