"""The Instant-NGP field: hash grid -> density MLP -> (SH view encoding) -> colour MLP. No biases.

Stable names for a quantization policy: grid.level00 .. grid.levelNN, density.fc0, density.fc1,
color.fc0, color.fc1, color.fc2 (see `NGPField.quant_units`).
"""

from __future__ import annotations

import torch
from torch import nn

from hero.nerf.hashgrid import HashGrid


class TruncExp(torch.autograd.Function):
    """exp with its input clamped at 15 (forward) and a gradient clamped likewise (torch-ngp)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x.clamp(max=15.0))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-15.0, 15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return TruncExp.apply(x)


def sh_encode(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 4 (16 values) of unit directions [N, 3], as tiny-cuda-nn."""
    x, y, z = d.unbind(-1)
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x,
        1.0925484305920792 * xy, -1.0925484305920792 * yz, 0.94617469575755997 * zz - 0.31539156525251999,
        -1.0925484305920792 * xz, 0.54627421529603959 * xx - 0.54627421529603959 * yy,
        0.59004358992664352 * y * (-3.0 * xx + yy), 2.8906114426405538 * xy * z,
        0.45704579946446572 * y * (1.0 - 5.0 * zz), 0.3731763325901154 * z * (5.0 * zz - 3.0),
        0.45704579946446572 * x * (1.0 - 5.0 * zz), 1.4453057213202769 * z * (xx - yy),
        0.59004358992664352 * x * (-xx + 3.0 * yy),
    ], -1)


class MLP(nn.Module):
    """Bias-free ReLU MLP whose layers are named fc0, fc1, ... (plain nn.Linear, so they can be wrapped)."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.n = len(dims) - 1
        for i in range(self.n):
            setattr(self, f"fc{i}", nn.Linear(dims[i], dims[i + 1], bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n):
            x = getattr(self, f"fc{i}")(x)
            if i < self.n - 1:
                x = torch.relu(x)
        return x


def box_coordinates(x: torch.Tensor, aabb: torch.Tensor) -> torch.Tensor:
    """World positions -> [0, 1)^3 inside the box aabb ([[min xyz], [max xyz]]), clamped."""
    u = (x - aabb[0]) / (aabb[1] - aabb[0])
    return u.clamp(0.0, 1.0 - 1e-6)


class NGPField(nn.Module):
    def __init__(self, cfg: dict, aabb):
        super().__init__()
        self.cfg = dict(cfg)
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("aabb", aabb)
        bound = float((aabb[1] - aabb[0]).max()) / 2.0
        self.grid = HashGrid(cfg["levels"], cfg["features"], cfg["log2T"], cfg["n_min"],
                             cfg["n_max_per_bound"] * bound)
        h, g = cfg["hidden"], cfg["geo_features"]
        self.density = MLP([self.grid.output_dim, h, 1 + g])
        self.color = MLP([g + 16, h, h, 3])

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """World positions -> [0, 1)^3 inside the scene box (clamped)."""
        return box_coordinates(x, self.aabb)

    def query_density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.density(self.grid(self.normalize(x))).float()  # float32 even under bf16 autocast
        return trunc_exp(h[:, 0]), h[:, 1:]

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions [N, 3] and unit directions [N, 3] -> density [N], colour [N, 3]."""
        return self.forward_sh(x, sh_encode(d))

    def forward_sh(self, x: torch.Tensor, sh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As forward, with the directions already SH-encoded ([N, 16])."""
        sigma, geo = self.query_density(x)
        rgb = torch.sigmoid(self.color(torch.cat([geo, sh], -1)).float())
        return sigma, rgb

    def quant_units(self) -> list[tuple[str, str, dict]]:
        """Every quantizable unit in dataflow order: (stable name, kind, info)."""
        units = []
        for p in self.grid.params:
            units.append((f"grid.level{p['level']:02d}", "hash_level", {
                "level": p["level"], "resolution": p["resolution"], "scale": p["scale"],
                "entries": p["entries"], "features": p["features"], "dense": p["dense"],
                "offset": p["offset"], "params": p["entries"] * p["features"]}))
        for mlp_name in ("density", "color"):
            mlp = getattr(self, mlp_name)
            for i in range(mlp.n):
                fc = getattr(mlp, f"fc{i}")
                units.append((f"{mlp_name}.fc{i}", "linear", {
                    "in_features": fc.in_features, "out_features": fc.out_features,
                    "params": fc.in_features * fc.out_features,
                    "activation": "relu" if i < mlp.n - 1 else ("trunc_exp" if mlp_name == "density" else
                                                                   "sigmoid")}))
        return units

    def unit(self, name: str):
        """The tensor (hash level table view) or nn.Linear behind a stable name."""
        if name.startswith("grid.level"):
            return self.grid.table(int(name[len("grid.level"):]))
        mlp_name, fc = name.split(".")
        return getattr(getattr(self, mlp_name), fc)
