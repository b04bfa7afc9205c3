"""Reference model and stimulus for the hash encoding unit, built on hero.intarith (the contract)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hero import intarith as ia
from rtl.heu import level_record


@dataclass(frozen=True)
class HeuSetup:
    """Everything loaded into the HEU: per-level registers and integer tables."""

    levels: list[ia.HashLevel]
    tables: list[np.ndarray]  # (entries, F) signed b_l-bit values per level
    log2t: int
    features: int
    word_bits: int
    ratios: list[float]  # per level, the real table-LSB-to-output-LSB factor its requant approximates

    @classmethod
    def of_export(cls, model) -> HeuSetup:
        """What a quantized model's artifact (hero.quant.export.QuantizedExport) loads into the HEU."""
        return cls(model.levels, model.tables, model.log2t, model.features, model.word_bits,
                   [s / model.enc_scale for s in model.table_scales])

    def config_records(self) -> list[dict]:
        """One `config` record per level, as the HEU's config_layout fields."""
        return [level_record(i, lv) for i, lv in enumerate(self.levels)]

    def memory_image(self) -> dict[int, int]:
        return ia.hash_memory_image(self.levels, self.tables, self.word_bits)

    def words_used(self) -> int:
        return ia.hash_table_words(self.levels, self.features, self.word_bits)

    def expected(self, pos: np.ndarray) -> np.ndarray:
        """(N, L*F) raw s8 patterns of the HEU's result lanes."""
        return ia.HASH_OUT_FORMAT.encode(ia.hash_encode(pos, self.levels, self.tables, self.log2t))


def random_setup(rng: np.random.Generator, levels: int, features: int, log2t: int, word_bits: int,
                 n_min: float, n_max: float, bits=None) -> HeuSetup:
    """Random tables over their whole range, with each level's requant scaled so that the output
    uses the s8 range (and sometimes saturates). `bits`: one width for all levels, a list, or None
    for random widths."""
    if bits is None:
        bits = rng.integers(ia.HASH_MIN_BITS, ia.HASH_MAX_BITS + 1, levels).tolist()
    elif isinstance(bits, int):
        bits = [bits] * levels
    out_scale = 1.0
    table_scales = [float(rng.uniform(0.4, 2.0)) * 128 / (1 << (b - 1)) for b in bits]
    lvls = ia.hash_levels(log2t, ia.hash_grid_scales(levels, n_min, n_max), bits, table_scales, out_scale,
                          features, word_bits)
    tables = []
    for lv in lvls:
        wf = ia.weight_format(lv.bits)
        tables.append(rng.integers(wf.min, wf.max + 1, size=(lv.entries, features)).astype(np.int64))
    return HeuSetup(lvls, tables, log2t, features, word_bits, [ts / out_scale for ts in table_scales])


def grid_line_positions(scale: int, limit: int = 4) -> np.ndarray:
    """u16 coordinates that land exactly on a grid line at this scale register (fraction 0), or, if
    none does, whose fraction truncates to 0 at the weights' precision."""
    raw = np.arange(1 << ia.HASH_POS_BITS, dtype=np.int64)
    shift = ia.HASH_POS_BITS + ia.HASH_SCALE_FRAC_BITS
    p = raw * scale + (1 << (shift - 1))
    exact = raw[(p & ((1 << shift) - 1)) == 0]
    if exact.size == 0:
        exact = raw[((p >> (shift - ia.HASH_WEIGHT_FRAC_BITS)) & ((1 << ia.HASH_WEIGHT_FRAC_BITS) - 1)) == 0]
    return exact[np.linspace(0, exact.size - 1, min(limit, exact.size)).astype(int)]


def edge_points(setup: HeuSetup, rng: np.random.Generator) -> np.ndarray:
    """0, just below 1, and grid-line coordinates of every level, mixed over the three axes."""
    top = (1 << ia.HASH_POS_BITS) - 1
    pts = [[0, 0, 0], [top, top, top], [0, top, 0], [top, 0, top], [1, top - 1, 0]]
    for lv in setup.levels:
        lines = grid_line_positions(lv.scale)
        for v in lines:
            other = int(rng.integers(0, top + 1))
            pts += [[v, v, v], [v, other, top], [0, v, other]]
    return np.array(pts, dtype=np.int64)


def random_points(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 1 << ia.HASH_POS_BITS, size=(n, 3)).astype(np.int64)
