"""Multi-resolution hash encoding with tiny-cuda-nn's conventions (encodings/grid.h).

Per level l: scale = N_min * b**l - 1 with b = exp(ln(N_max / N_min) / (L - 1)); resolution =
ceil(scale) + 1; a point x in [0, 1)^3 sits at pos = x * scale + 0.5 (float32, two roundings);
corner = floor(pos), trilinear weights from the fraction ((wx * wy) * wz). A level whose
resolution**3 fits in its table is dense, index = x + y*R + z*R*R (mod entries); otherwise the index
is (x * 1) ^ (y * 2654435761) ^ (z * 805459861) in uint32, mod T = 2**log2T. Entries per level:
min(resolution**3 rounded up to 8, T). The hardware hash unit mirrors these functions.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from hero import intarith


def level_params(levels: int, features: int, log2T: int, n_min: float, n_max: float) -> list[dict]:
    """Per-level scale, resolution, entries, dense-or-hash decision and offset (in entries), from
    hero.intarith.hash_grid_scales and hash_level_geometry (the HEU's own)."""
    out, offset = [], 0
    for lv, scale in enumerate(intarith.hash_grid_scales(levels, n_min, n_max)):
        res, dense, entries = intarith.hash_level_geometry(scale, log2T)
        out.append({"level": lv, "scale": scale, "resolution": res, "entries": entries,
                    "dense": dense, "offset": offset, "features": features})
        offset += entries
    return out


def grid_index(corner: torch.Tensor, resolution: int, entries: int, dense: bool) -> torch.Tensor:
    """Table index of integer corners [..., 3] (int64) at one level: hero.intarith.grid_index."""
    return intarith.grid_index(corner, resolution, entries, dense, (entries - 1).bit_length())


def encode_reference(x: torch.Tensor, embeddings: torch.Tensor, params: list[dict]) -> torch.Tensor:
    """Straightforward pure-PyTorch encoding (autograd does the backward): [N, 3] -> [N, L*F]."""
    feats = []
    for p in params:
        pos = x * p["scale"]
        pos = pos + 0.5
        fl = torch.floor(pos)
        frac = pos - fl
        base = fl.long()
        table = embeddings[p["offset"]: p["offset"] + p["entries"]]
        acc = None
        for c in range(intarith.HASH_CORNERS):
            bits = torch.tensor([c & 1, (c >> 1) & 1, (c >> 2) & 1], device=x.device)
            w3 = torch.where(bits.bool(), frac, 1.0 - frac)
            w = (w3[:, 0] * w3[:, 1]) * w3[:, 2]
            idx = grid_index(base + bits, p["resolution"], p["entries"], p["dense"])
            term = w[:, None] * table[idx]
            acc = term if acc is None else acc + term
        feats.append(acc)
    return torch.cat(feats, -1)


_native = None
_native_error: str | None = None


def cache_dir() -> Path:
    """build/torch_extensions/ in the source tree when writable, else ~/.cache/hero/torch_extensions."""
    here = Path(__file__).resolve().parents[2] / "build" / "torch_extensions"
    try:
        here.mkdir(parents=True, exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    home = Path.home() / ".cache" / "hero" / "torch_extensions"
    home.mkdir(parents=True, exist_ok=True)
    return home


def native():
    """The compiled CPU kernel (built on first use, about 10-20 s), or None if it cannot be built."""
    global _native, _native_error
    if _native is None and _native_error is None:
        if os.environ.get("HERO_NO_NATIVE"):
            _native_error = "disabled by HERO_NO_NATIVE"
            return None
        try:
            from torch.utils.cpp_extension import load

            src = Path(__file__).with_name("csrc") / "hashgrid.cpp"
            build = cache_dir() / "hero_hashgrid"
            build.mkdir(parents=True, exist_ok=True)
            _, py, pz = intarith.HASH_PRIMES  # x's prime is 1 (tiny-cuda-nn): the kernel uses x as it is
            primes = [f"-DHERO_HASH_PRIME_Y={py}u", f"-DHERO_HASH_PRIME_Z={pz}u"]
            _native = load("hero_hashgrid", [str(src)], build_directory=str(build),
                           extra_cflags=["-O3", "-fopenmp", "-ffp-contract=off", "-march=native", *primes],
                           extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as exc:  # noqa: BLE001 - any build failure means: use the PyTorch path
            _native_error = f"{type(exc).__name__}: {exc}"
    return _native


class _NativeEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, embeddings, meta):
        grid, threads = meta
        out = torch.empty(x.shape[0], grid.levels * grid.features, dtype=torch.float32)
        native().forward(x.data_ptr(), x.shape[0], grid.features, grid.levels, grid.log2T, *grid._ptrs(),
                         embeddings.data_ptr(), out.data_ptr(), threads)
        ctx.save_for_backward(x)
        ctx.meta = meta
        ctx.n_emb = embeddings.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        grid, threads = ctx.meta
        grad_out = grad_out.contiguous().float()
        grad_emb = torch.zeros(ctx.n_emb, grid.features, dtype=torch.float32)
        native().backward(x.data_ptr(), x.shape[0], grid.features, grid.levels, grid.log2T, *grid._ptrs(),
                          grad_out.data_ptr(), grad_emb.data_ptr(), threads)
        return None, grad_emb, None


class HashGrid(nn.Module):
    """The encoding; `embeddings` holds all levels, `table(l)` is level l's [entries, F] view."""

    def __init__(self, levels: int = 16, features: int = 2, log2T: int = 19, n_min: float = 16,
                 n_max: float = 2048, init_scale: float = 1e-4, use_native: bool = True):
        super().__init__()
        self.levels, self.features, self.log2T = levels, features, log2T
        self.n_min, self.n_max = float(n_min), float(n_max)
        self.params = level_params(levels, features, log2T, n_min, n_max)
        total = sum(p["entries"] for p in self.params)
        self.embeddings = nn.Parameter(torch.empty(total, features).uniform_(-init_scale, init_scale))
        self.use_native = use_native
        self.register_buffer("scales", torch.tensor([p["scale"] for p in self.params], dtype=torch.float32),
                             persistent=False)
        for key in ("resolution", "entries", "offset", "dense"):
            self.register_buffer(f"_{key}", torch.tensor([int(p[key]) for p in self.params], dtype=torch.int64),
                                 persistent=False)

    @property
    def output_dim(self) -> int:
        return self.levels * self.features

    def table(self, level: int) -> torch.Tensor:
        p = self.params[level]
        return self.embeddings[p["offset"]: p["offset"] + p["entries"]]

    def _ptrs(self):
        return (self.scales.data_ptr(), self._resolution.data_ptr(), self._entries.data_ptr(),
                self._offset.data_ptr(), self._dense.data_ptr())

    def native_ok(self, x: torch.Tensor) -> bool:
        return self.use_native and x.device.type == "cpu" and native() is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3] in [0, 1) (normalised into the scene box) -> [N, L*F]."""
        x = x.float()
        if self.native_ok(x):
            return _NativeEncode.apply(x.contiguous(), self.embeddings.contiguous(),
                                       (self, torch.get_num_threads()))
        return encode_reference(x, self.embeddings, self.params)
