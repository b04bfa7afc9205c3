"""The frozen quantized model, and its file form: every integer and register the accelerator loads
(docs/quant.md).

`frozen(qn)` turns a QuantizedNeRF (whose QLayers keep the torch tensors that QAT trains) into the
artifact the hardware side consumes, a QuantizedExport of numpy arrays and intarith records;
`save` writes it and `load_export` reads it back equal; `export(qn, path)` is both.

One .npz file, format "hero-qmodel/2":
- `meta`: JSON text: format, grid (levels, features, log2t, word_bits), the HEU's per-level config
  records (exactly rtl.heu's config fields), the MLP layers (name, weight bits, K, C, input format,
  per-channel requant registers or null, relu_after, per-channel w_scale and out_scale), the host's float scales
  (enc_scale, sh_scale) and the policy;
- `table_memory`: uint64 array, the HEU table memory image (word a at index a, bit-packed levels);
- `table_LL`: int8 array (entries, F), level LL's table values (the same data, unpacked);
- `weight_<layer>`: int8 array (K, C), the layer's weights (layer name with '.' as '_').
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hero import atomic
from hero import intarith as ia

FORMAT = "hero-qmodel/2"  # 2: per-channel weight scales and requantization


@dataclass
class ExportedLayer:
    name: str
    bits: int
    weights: np.ndarray  # (K, C) int
    in_format: ia.IntFormat
    rq: ia.Requant | None  # per output channel
    relu_after: bool
    w_scale: np.ndarray  # (C,) float64
    out_scale: np.ndarray  # per requantized channel


@dataclass
class QuantizedExport:
    meta: dict
    levels: list[ia.HashLevel]
    tables: list[np.ndarray]
    table_memory: np.ndarray
    layers: list[ExportedLayer]

    @property
    def log2t(self) -> int:
        return self.meta["grid"]["log2t"]

    @property
    def features(self) -> int:
        return self.meta["grid"]["features"]

    @property
    def word_bits(self) -> int:
        return self.meta["grid"]["word_bits"]

    def layer(self, name: str) -> ExportedLayer:
        return next(x for x in self.layers if x.name == name)


def _key(name: str) -> str:
    return "weight_" + name.replace(".", "_")


def frozen(qn) -> QuantizedExport:
    """The artifact of `qn` (hero.quant.qnerf.QuantizedNeRF), as load_export reads it from its file."""
    tables = [t.numpy().astype(np.int64) for t in qn.tables_int()]
    image = ia.hash_memory_image(qn.levels, tables, qn.word_bits)
    memory = np.zeros(qn.table_words, dtype=np.uint64)
    for addr, word in image.items():
        memory[addr] = word
    layers = [ExportedLayer(q.name, q.bits, q.w_int.numpy().astype(np.int64), q.in_fmt, q.rq, q.relu_after,
                            q.w_scale.double().numpy(), q.out_scale.double().numpy()) for q in qn.layers]
    meta = {
        "format": FORMAT,
        "grid": {"levels": len(qn.levels), "features": qn.grid.features, "log2t": qn.grid.log2T,
                 "word_bits": qn.word_bits, "table_words": qn.table_words},
        "heu_config": [{"level": i, "scale": lv.scale, "resolution": lv.resolution, "dense": int(lv.dense),
                        "entries": lv.entries, "bits": lv.bits, "base": lv.base, "rq_mult": lv.rq.mult,
                        "rq_shift": lv.rq.shift} for i, lv in enumerate(qn.levels)],
        "layers": [{"name": x.name, "bits": x.bits, "k": int(x.weights.shape[0]), "c": int(x.weights.shape[1]),
                    "in_bits": x.in_format.bits, "in_signed": x.in_format.signed,
                    "rq": None if x.rq is None else {"mult": list(x.rq.mult), "shift": list(x.rq.shift),
                                                     "relu": x.rq.relu, "out_bits": x.rq.out_bits},
                    "relu_after": x.relu_after, "w_scale": x.w_scale.tolist(), "out_scale": x.out_scale.tolist()}
                   for x in layers],
        "host": {"enc_scale": qn.enc_scale, "sh_scale": qn.sh_scale},
        "policy": qn.policy.to_dict(),
    }
    return QuantizedExport(meta, list(qn.levels), tables, memory, layers)


def save(model: QuantizedExport, path: str | Path) -> Path:
    """Write the artifact atomically to `path` (the file form above)."""
    path = Path(path)
    arrays = {"meta": np.array(json.dumps(model.meta)), "table_memory": model.table_memory}
    arrays.update({f"table_{i:02d}": t.astype(np.int8) for i, t in enumerate(model.tables)})
    arrays.update({_key(x.name): x.weights.astype(np.int8) for x in model.layers})
    with atomic.open_write(path) as f:  # the umask's permissions, as every result file
        np.savez_compressed(f, **arrays)
    return path


def export(qn, path: str | Path) -> Path:
    """Write the quantized model `qn` (hero.quant.qnerf.QuantizedNeRF) atomically to `path`."""
    return save(frozen(qn), path)


def load_export(path: str | Path) -> QuantizedExport:
    path = Path(path)
    try:
        z = np.load(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    with z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        levels = [ia.HashLevel(c["scale"], c["resolution"], bool(c["dense"]), c["entries"], c["bits"], c["base"],
                               ia.Requant(c["rq_mult"], c["rq_shift"], relu=False, out_bits=ia.ACT_BITS))
                  for c in meta["heu_config"]]
        tables = [z[f"table_{i:02d}"].astype(np.int64) for i in range(len(levels))]
        layers = []
        for x in meta["layers"]:
            rq = None if x["rq"] is None else ia.Requant(tuple(x["rq"]["mult"]), tuple(x["rq"]["shift"]),
                                                         x["rq"]["relu"], x["rq"]["out_bits"])
            layers.append(ExportedLayer(x["name"], x["bits"], z[_key(x["name"])].astype(np.int64),
                                        ia.IntFormat(x["in_bits"], x["in_signed"]), rq, x["relu_after"],
                                        np.asarray(x["w_scale"]), np.asarray(x["out_scale"])))
        return QuantizedExport(meta, levels, tables, z["table_memory"], layers)
