"""The frozen quantized model: every integer and register the accelerator loads, the integer path
that computes on it exactly as the RTL does, and its file form (docs/quant.md).

`frozen(qn)` turns a QuantizedNeRF into the artifact, a QuantizedExport of intarith records, integer
tables and the layers' QLayer records (the one layer record: the integer path reads its integers and
registers, the fake-quant path its scales). Everything downstream consumes the artifact:
`trace_int` / `forward_int` (the integer path, hero.intarith's arithmetic), the testbenches and
the core's loader (rtl.core.CoreParams.config_records), and the cycle model's calibration.
`save` writes it and `load_export` reads it back equal; `export(qn, path)` is both.

One .npz file, format "hero-qmodel/3":
- `meta`: JSON text: format; grid (levels, features, log2t, word_bits, table_words, the scene box);
  per level the hero.intarith.HashLevel fields and the table's real scale; `heu_config`, the HEU's
  config records (rtl.heu.level_record, the unit's one encoder); per layer its name, weight bits,
  K, C, input format, per-channel requant registers or null, relu_after, per-channel w_scale,
  out_scale and in_scale; the host's float scales (enc_scale, sh_scale); the policy;
- `table_memory`: uint64 array, the HEU table memory image (word a at index a, bit-packed levels);
- `table_LL`: int8 array (entries, F), level LL's table values (the same data, unpacked);
- `weight_<layer>`: int8 array (K, C), the layer's weights (layer name with '.' as '_');
- `offset_<layer>`: int8 array (K, C), GPTQ's choices against round-to-nearest (fake-quant QAT
  only), where the layer has them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from hero import atomic
from hero import intarith as ia
from hero.nerf.dataflow import HOST_LAYERS, SH_LAYER, run_field
from hero.nerf.model import box_coordinates, trunc_exp

FORMAT = "hero-qmodel/3"  # 3: level records as data (registers from rtl.heu), in_scale, offsets, scene box


@dataclass
class QLayer:
    """One quantized linear layer: its integers, registers and the real scales they stand for."""

    name: str
    bits: int  # weight bits
    in_fmt: ia.IntFormat  # input activation format
    in_scale: torch.Tensor  # (K,) real value of one input LSB, per input channel
    w_scale: torch.Tensor  # (C,) real value of one accumulator LSB, per output channel
    w_int: torch.Tensor  # (K, C) int64, in the symmetric range of `bits`
    rq: ia.Requant | None  # per-channel, to the next layer's input (None: accumulators go to the host)
    out_scale: torch.Tensor  # real value of one output LSB after rq, per requantized channel (M/2^S effective)
    relu_after: bool = False  # ReLU not fused: requantize to signed, then ReLU
    w_offset: torch.Tensor | None = None  # w_int minus round-to-nearest at refresh (GPTQ's choices)

    def requantize(self, acc):
        """The engine's requantizer on this layer's accumulators (then the ReLU if not fused)."""
        y = ia.requantize(acc, self.rq)
        return y.clamp(min=0) if self.relu_after else y


@dataclass
class QuantizedExport:
    """The frozen quantized model (the artifact)."""

    grid: dict  # levels, features, log2t, word_bits, table_words, aabb ([[min xyz], [max xyz]])
    levels: list[ia.HashLevel]
    tables: list[np.ndarray]  # (entries, F) int64 per level
    table_scales: list[float]  # real value of one table LSB, per level
    layers: list[QLayer]
    enc_scale: float  # real value of one HEU output LSB
    sh_scale: float  # real value of one SH input LSB (the host quantizes the SH values)
    policy: dict
    _memory: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def log2t(self) -> int:
        return self.grid["log2t"]

    @property
    def features(self) -> int:
        return self.grid["features"]

    @property
    def word_bits(self) -> int:
        return self.grid["word_bits"]

    @property
    def table_memory(self) -> np.ndarray:
        """The HEU table memory image (uint64 words), packed on first use."""
        if self._memory is None:
            memory = np.zeros(self.grid["table_words"], dtype=np.uint64)
            for addr, word in ia.hash_memory_image(self.levels, self.tables, self.word_bits).items():
                memory[addr] = word
            self._memory = memory
        return self._memory

    def layer(self, name: str) -> QLayer:
        return next(x for x in self.layers if x.name == name)

    # -- the integer path: exactly the hardware ------------------------------------------------------

    def encode_int(self, x01) -> torch.Tensor:
        """HEU output, (N, L*F) s8, from positions in [0, 1)^3."""
        pos = torch.from_numpy(ia.hash_position(torch.as_tensor(x01).detach().cpu().double().numpy()))
        return ia.hash_encode(pos, self.levels, [torch.from_numpy(t) for t in self.tables], self.log2t)

    def box_coordinates(self, positions: torch.Tensor) -> torch.Tensor:
        """World positions -> [0, 1)^3 inside the scene box, as the float model normalizes them."""
        return box_coordinates(positions, torch.tensor(self.grid["aabb"], dtype=torch.float32))

    def sh_int(self, sh: torch.Tensor) -> torch.Tensor:
        """The host's SH values (N, 16) as the colour net's integer inputs (round half up, saturated)."""
        return self.layer(SH_LAYER).in_fmt.saturate(ia.round_half_up(sh.double() / self.sh_scale).long())

    @torch.no_grad()
    def trace_int(self, positions: torch.Tensor, sh: torch.Tensor) -> dict:
        """Every integer on the way: 'encoding' (HEU output), and per layer 'in.<name>' and 'acc.<name>'."""
        q = {layer.name: layer for layer in self.layers}
        t = {"encoding": self.encode_int(self.box_coordinates(positions))}
        inputs, raw = run_field(t["encoding"], sh,
                                lambda n, x: ia.linear_layer(x, q[n].w_int, q[n].bits, None, q[n].in_fmt),
                                lambda n, acc: q[n].requantize(acc), self.sh_int,
                                lambda g, s: torch.cat([g, s], -1))
        t.update({f"in.{n}": x for n, x in inputs.items()})
        t.update({f"acc.{n}": y for n, y in raw.items()})
        return t

    def host_outputs(self, density_acc: torch.Tensor, color_acc: torch.Tensor):
        """Density [N] and colour [N, 3] from the raw accumulators that leave the engine (density.fc1's
        output 0, color.fc2's outputs): the host's trunc_exp and sigmoid."""
        density, color = HOST_LAYERS
        sigma = trunc_exp(density_acc.double() * self.layer(density).w_scale[0]).float()
        rgb = torch.sigmoid(color_acc.double() * self.layer(color).w_scale).float()
        return sigma, rgb

    @torch.no_grad()
    def forward_int(self, positions: torch.Tensor, sh: torch.Tensor):
        """Density [N] and colour [N, 3] from positions and SH-encoded directions, in the RTL's integers."""
        t = self.trace_int(positions, sh)
        density, color = HOST_LAYERS
        return self.host_outputs(t[f"acc.{density}"][:, 0], t[f"acc.{color}"])


def frozen(qn) -> QuantizedExport:
    """The artifact of `qn` (hero.quant.qnerf.QuantizedNeRF) as of its last refresh."""
    tables = [t.numpy().astype(np.int64) for t in qn.tables_int()]
    grid = {"levels": len(qn.levels), "features": qn.grid.features, "log2t": qn.grid.log2T,
            "word_bits": qn.word_bits, "table_words": qn.table_words, "aabb": qn.model.aabb.tolist()}
    return QuantizedExport(grid, list(qn.levels), tables, [float(s) for s in qn.table_scale], list(qn.layers),
                           float(qn.enc_scale), float(qn.sh_scale), qn.policy.to_dict())


def _key(prefix: str, name: str) -> str:
    return prefix + name.replace(".", "_")


def _requant(r: ia.Requant | None) -> dict | None:
    return None if r is None else {"mult": r.mult, "shift": r.shift, "relu": r.relu, "out_bits": r.out_bits}


def _requant_back(d: dict | None) -> ia.Requant | None:
    return None if d is None else ia.Requant(d["mult"], d["shift"], d["relu"], d["out_bits"])


def meta(model: QuantizedExport) -> dict:
    """The file's JSON part: everything but the integer arrays."""
    from rtl.heu import level_record  # the HEU's one register encoder

    def level(lv: ia.HashLevel, scale: float) -> dict:
        d = {f.name: getattr(lv, f.name) for f in fields(lv) if f.name != "rq"}
        return {**d, "dense": bool(lv.dense), "rq": _requant(lv.rq), "table_scale": scale}

    return {
        "format": FORMAT,
        "grid": model.grid,
        "levels": [level(lv, s) for lv, s in zip(model.levels, model.table_scales, strict=True)],
        "heu_config": [level_record(i, lv) for i, lv in enumerate(model.levels)],
        "layers": [{"name": x.name, "bits": x.bits, "k": int(x.w_int.shape[0]), "c": int(x.w_int.shape[1]),
                    "in_bits": x.in_fmt.bits, "in_signed": x.in_fmt.signed, "rq": _requant(x.rq),
                    "relu_after": x.relu_after, "w_scale": x.w_scale.tolist(), "out_scale": x.out_scale.tolist(),
                    "in_scale": x.in_scale.tolist()} for x in model.layers],
        "host": {"enc_scale": model.enc_scale, "sh_scale": model.sh_scale},
        "policy": model.policy,
    }


def save(model: QuantizedExport, path: str | Path) -> Path:
    """Write the artifact atomically to `path` (the file form above)."""
    path = Path(path)
    arrays = {"meta": np.array(json.dumps(meta(model))), "table_memory": model.table_memory}
    arrays.update({f"table_{i:02d}": t.astype(np.int8) for i, t in enumerate(model.tables)})
    arrays.update({_key("weight_", x.name): x.w_int.numpy().astype(np.int8) for x in model.layers})
    arrays.update({_key("offset_", x.name): x.w_offset.numpy().astype(np.int8)
                   for x in model.layers if x.w_offset is not None})
    with atomic.open_write(path) as f:  # the umask's permissions, as every result file
        np.savez_compressed(f, **arrays)
    return path


def export(qn, path: str | Path) -> Path:
    """Write the quantized model `qn` (hero.quant.qnerf.QuantizedNeRF) atomically to `path`."""
    return save(frozen(qn), path)


def load_export(path: str | Path) -> QuantizedExport:
    """Read an artifact written by `save`; a missing file or another format is a ValueError naming it."""
    path = Path(path)
    try:
        z = np.load(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    with z:
        m = json.loads(str(z["meta"]))
        if m.get("format") != FORMAT:
            raise ValueError(f"{path}: format {m.get('format')!r} is not {FORMAT!r}; export the model again "
                             "(python -m hero.qat writes model.npz)")
        levels = [ia.HashLevel(c["scale"], c["resolution"], bool(c["dense"]), c["entries"], c["bits"], c["base"],
                               _requant_back(c["rq"])) for c in m["levels"]]
        tables = [z[f"table_{i:02d}"].astype(np.int64) for i in range(len(levels))]
        layers = []
        for x in m["layers"]:
            ints = {k: torch.from_numpy(z[_key(k, x["name"])].astype(np.int64))
                    for k in ("weight_", "offset_") if _key(k, x["name"]) in z.files}
            reals = {k: torch.tensor(x[k], dtype=torch.float64) for k in ("in_scale", "w_scale", "out_scale")}
            layers.append(QLayer(x["name"], x["bits"], ia.IntFormat(x["in_bits"], x["in_signed"]), reals["in_scale"],
                                 reals["w_scale"], ints["weight_"], _requant_back(x["rq"]), reals["out_scale"],
                                 x["relu_after"], ints.get("offset_")))
        return QuantizedExport(m["grid"], levels, tables, [c["table_scale"] for c in m["levels"]], layers,
                               m["host"]["enc_scale"], m["host"]["sh_scale"], m["policy"], z["table_memory"])
