"""Host side of the core's benches and sweeps: a quantized NeRF's export and its trace for rtl.core.Core.

The trace holds what the testbench sends (u16 positions, SH integers) and what it expects (the
integer path's accumulators). tests/test_core_rtl.py uses it on the tests' trained tiny NeRF;
`make calibrate` and bench.cycle_model on untrained ones (the core's cycles do not depend on the
values, and a sweep must not need a training run).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hero.intarith import ACT_BITS, MIN_WBITS, WORD_BITS, hash_position
from hero.nerf.model import NGPField, sh_encode
from hero.nerf.presets import preset
from hero.quant.export import QuantizedExport, save
from hero.quant.policy import FIRST_LAYER, Policy
from hero.quant.qnerf import QuantizedNeRF, calibrate_ranges
from rtl.core import CoreParams

#: The untrained NeRF of the sweeps: the tests' tiny preset at `levels` levels.
SWEEP_MODEL = {"features": 2, "log2T": 12, "n_min": 8, "n_max_per_bound": 32, "hidden": 16, "grid_res": 16}
AABB = torch.tensor([[-1.5] * 3, [1.5] * 3])


def random_policy(model, seed: int, max_wbits: int) -> Policy:
    """Tables, weights and activations at random widths (2..8; weights up to max_wbits)."""
    rng = np.random.default_rng(seed)
    units = model.quant_units()
    tables = {n: int(rng.integers(MIN_WBITS, 9)) for n, k, _ in units if k == "hash_level"}
    layers = [n for n, k, _ in units if k == "linear"]
    weights = {n: int(rng.integers(MIN_WBITS, max_wbits + 1)) for n in layers}
    acts = {n: ACT_BITS if n == FIRST_LAYER else int(rng.integers(MIN_WBITS, 9)) for n in layers}
    return Policy(tables, weights, acts)


def save_trace(model: QuantizedExport, pos: torch.Tensor, sh: torch.Tensor, path) -> None:
    """What the testbench sends (u16 positions, SH integers) and what it expects (the artifact's
    integer path)."""
    trace = {k: v.numpy() for k, v in model.trace_int(pos, sh).items()}
    trace["positions"] = hash_position(model.box_coordinates(pos).double().numpy())
    trace["sh"] = model.sh_int(sh).numpy()
    np.savez(path, **trace)


def core_params(qn: QuantizedNeRF, rows: int, cols: int, max_wbits: int) -> CoreParams:
    """The smallest core that holds `qn`, on an R x C array."""
    g, cfg = qn.grid, qn.model.cfg
    return CoreParams(levels=g.levels, features=g.features, log2t=g.log2T, word_bits=qn.word_bits,
                      hidden=cfg["hidden"], geo=cfg["geo_features"], rows=rows, cols=cols, max_wbits=max_wbits)


def sweep_core_params(levels: int, rows: int, cols: int, max_wbits: int) -> CoreParams:
    """The core that holds the sweeps' untrained NeRF at `levels` levels (sweep_case checks it)."""
    m = preset("tiny", levels=levels, **SWEEP_MODEL)
    return CoreParams(levels=levels, features=m["features"], log2t=m["log2T"], word_bits=WORD_BITS,
                      hidden=m["hidden"], geo=m["geo_features"], rows=rows, cols=cols, max_wbits=max_wbits)


def untrained_nerf(levels: int, seed: int = 0, n: int = 2048):
    """An untrained NeRF of the sweep preset, and `n` random samples in its box (positions, directions)."""
    torch.manual_seed(seed)
    model = NGPField(preset("tiny", levels=levels, **SWEEP_MODEL), AABB)
    g = torch.Generator().manual_seed(seed)
    pos = AABB[0] + (AABB[1] - AABB[0]) * torch.rand(n, 3, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return model, pos, dirs


def sweep_case(levels: int, rows: int, cols: int, max_wbits: int, policy_seed: int, out: Path,
               n_trace: int = 64) -> tuple[CoreParams, dict]:
    """An untrained NeRF at a random policy, exported for a core: its CoreParams and tb_core's params."""
    model, pos, dirs = untrained_nerf(levels)
    qn = QuantizedNeRF(model, random_policy(model, policy_seed, max_wbits), calibrate_ranges(model, pos, dirs))
    out.mkdir(parents=True, exist_ok=True)
    art = qn.frozen()
    save_trace(art, pos[:n_trace], sh_encode(dirs[:n_trace]), out / "trace.npz")
    params = core_params(qn, rows, cols, max_wbits)
    assert params == sweep_core_params(levels, rows, cols, max_wbits)
    return params, {"core": asdict(params), "export": str(save(art, out / "model.npz")),
                    "trace": str(out / "trace.npz")}
