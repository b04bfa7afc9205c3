"""Frame latency on the accelerator under a quantization policy (docs/cycle_model.md).

FrameModel(workload, hw, backend) does the per-scene preparation once (every traced sample's
corner indices at every level, with the HEU's own integer index arithmetic); query(table_bits,
weight_bits) then times a frame in milliseconds:

- encoding: the HEU, backend.heu_batch_cycles over its lanes, plus bank conflicts between lanes on
  the banked table SRAM (counted on the trace);
- memory: levels that do not fit the table SRAM at their bit width go through the cache to DRAM
  (sim_py.memory); DRAM time beyond the HEU's own time is the memory stall;
- MLP: every layer of every batch of R samples as ceil(C_out / C) tiles of backend.mlp_tile_cycles;
- overlap: the core's schedule (sim_py.core, docs/core.md): the HEU encodes one batch while the
  engine runs the previous one's tiles and sends its R results; the HEU's time per sample is its
  lookups over its lanes plus its share of bank conflicts and memory stalls. For one lane and every
  level on chip this is the core's cycle counter exactly. Plus loading the weights once, a record a
  cycle through the core's config port (backend.config_cycles).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from hero.intarith import (
    hash_corner_offsets,
    hash_entry_address,
    hash_grid_position,
    hash_index,
    hash_levels,
)

from .core import WEIGHT_TARGETS, column_folds, config_records, frame_cycles
from .heu import CORNERS
from .hw import HardwareConfig
from .memory import dram_cycles, entry_line, lru_misses, place_levels
from .workload import Workload


@dataclass(frozen=True)
class Breakdown:
    """Cycles of one frame. encoding + memory_stall + mlp + other >= total: the units overlap."""

    total: float
    encoding: float
    mlp: float
    memory_stall: float
    other: float
    clock_mhz: float
    details: dict = field(default_factory=dict, compare=False)

    @property
    def ms(self) -> float:
        return self.total / (self.clock_mhz * 1e3)

    def shares(self) -> dict[str, float]:
        """Each part's share of the summed unit busy time."""
        parts = {"encoding": self.encoding, "mlp": self.mlp, "memory_stall": self.memory_stall, "other": self.other}
        busy = sum(parts.values()) or 1.0
        return {k: v / busy for k, v in parts.items()}


class FrameModel:
    def __init__(self, workload: Workload, hw: HardwareConfig, backend):
        self.w, self.hw, self.backend = workload, hw, backend
        self.features = workload.levels[0].features
        # One-time preparation: the traced samples' corner indices, (L, S, 8).
        regs = hash_levels(workload.log2t, [lv.scale for lv in workload.levels], [8] * len(workload.levels),
                           [1.0] * len(workload.levels), 1.0, self.features, hw.heu_word_bits)
        offsets = hash_corner_offsets()
        self.idx = np.stack([hash_index(hash_grid_position(workload.trace_pos, r.scale)[0][:, None, :] + offsets,
                                        r, workload.log2t) for r in regs])
        for lv, r in zip(workload.levels, regs, strict=True):
            if (lv.entries, lv.dense) != (r.entries, r.dense):
                raise ValueError(f"{lv.name}: the model's table ({lv.entries} entries, dense={lv.dense}) is not "
                                 f"the HEU's ({r.entries}, dense={r.dense})")
        self.counted = np.repeat(workload.trace_counted, CORNERS)
        self.weight = workload.trace_weight

    def check_policy(self, table_bits, weight_bits) -> tuple[list[int], list[int]]:
        tb, wb = [int(b) for b in table_bits], [int(b) for b in weight_bits]
        if len(tb) != len(self.w.levels) or len(wb) != len(self.w.layers):
            raise ValueError(f"policy has {len(tb)} table and {len(wb)} weight widths; the model has "
                             f"{len(self.w.levels)} levels and {len(self.w.layers)} layers")
        for b in tb + wb:
            if not 2 <= b <= self.hw.max_wbits:
                raise ValueError(f"bit width {b} outside 2..{self.hw.max_wbits}")
        return tb, wb

    def query(self, table_bits, weight_bits) -> Breakdown:
        tb, wb = self.check_policy(table_bits, weight_bits)
        hw, w, f = self.hw, self.w, self.features
        n, L = w.n_samples, len(w.levels)
        place = place_levels([lv.entries for lv in w.levels], f, tb, hw.heu_word_bits, hw.table_sram_words)

        # Encoding: lanes work on consecutive samples; one lookup per lane per cycle.
        per_lane = math.ceil(n / hw.heu_lanes)
        heu_compute = self.backend.heu_batch_cycles(per_lane, L)
        conflicts = self._bank_conflicts(place, tb) * self.weight / max(hw.heu_lanes, 1)

        # Memory: off-chip levels through the cache to DRAM.
        off = [lvl for lvl in range(L) if not place.on_chip[lvl]]
        misses = np.zeros(L)
        if off:
            lines = np.stack([entry_line(self.idx[lvl], place.base_word[lvl], f, tb[lvl], hw.heu_word_bits,
                                         hw.cache_line_bytes) for lvl in off], axis=1)  # (S, off, 8)
            stream = np.broadcast_to(np.arange(len(off), dtype=np.int32)[None, :, None], lines.shape)
            counted = np.broadcast_to(w.trace_counted[:, None, None], lines.shape)
            m = lru_misses(lines.reshape(-1), stream.reshape(-1), len(off), hw.cache_sets, hw.cache_ways,
                           counted.reshape(-1))
            misses[off] = m * self.weight
        dram = dram_cycles(int(round(misses.sum())), hw.cache_line_bytes, hw.dram_bytes_per_cycle,
                           hw.dram_latency_cycles)
        encoding = heu_compute + conflicts
        stall = max(0.0, dram - encoding)

        # MLP engine.
        per_batch = {ly.name: column_folds(ly.c_out, hw.pe_cols) * self.backend.mlp_tile_cycles(ly.k, b, hw.pe_rows,
                                                                                               hw.pe_cols)
                     for ly, b in zip(w.layers, wb, strict=True)}
        n_batches = math.ceil(n / hw.pe_rows)
        tiles = sum(per_batch.values())
        timing = self.backend.core_timing(L, tiles)
        mlp = n_batches * tiles + n * timing.result  # every batch's tiles, then its results

        # The core's schedule, and the one-time weight load.
        heu_total = encoding + stall
        point = timing.point / hw.heu_lanes + (conflicts + stall) / n
        core = frame_cycles(n, dataclasses.replace(timing, point=point), hw.pe_rows)
        # The weights and their layer and requantization registers, a record a cycle through the
        # config port, the first after a DRAM latency.
        records = config_records([(ly.k, ly.c_out, b) for ly, b in zip(w.layers, wb, strict=True)], hw.pe_cols)
        weight_load = self.backend.config_cycles(sum(records[t] for t in WEIGHT_TARGETS)) + hw.dram_latency_cycles
        other = max(0.0, core - max(heu_total, mlp)) + weight_load  # fill, drain, weight load
        total = core + weight_load
        details = {
            "samples": n, "rays": w.n_rays, "lookups": n * CORNERS * L, "on_chip": list(place.on_chip),
            "table_words": list(place.words), "misses_per_level": misses.tolist(), "dram_cycles": dram,
            "bank_conflict_cycles": conflicts, "mlp_cycles_per_batch": per_batch, "core_cycles": core,
            "bound": "mlp" if mlp >= heu_total else ("memory" if stall > 0 else "encoding"),
        }
        return Breakdown(total, encoding, mlp, stall, other, hw.clock_mhz, details)

    def _bank_conflicts(self, place, tb) -> float:
        """Extra cycles when lanes' simultaneous on-chip lookups hit the same SRAM bank (trace).

        One lookup step is (level, group of `lanes` consecutive samples, corner): the lanes' requests
        to one bank are served one per cycle, so a step costs its busiest bank's request count.
        """
        hw = self.hw
        lanes, banks = hw.heu_lanes, hw.heu_banks
        on = [lvl for lvl in range(len(tb)) if place.on_chip[lvl]]
        if lanes < 2 or banks < 2 or not on:
            return 0.0
        groups = self.idx.shape[1] // lanes
        s = groups * lanes
        if not hasattr(self, "_step"):
            self._step = ((np.arange(s) // lanes)[:, None] * CORNERS + np.arange(CORNERS)[None, :]) * banks
            self._group_counted = self.w.trace_counted[:s].reshape(groups, lanes).all(axis=1)
        extra = 0
        for lvl in on:
            word, _ = hash_entry_address(self.idx[lvl, :s], self.features, tb[lvl], hw.heu_word_bits,
                                         place.base_word[lvl])
            bank = word % banks
            counts = np.bincount((self._step + bank).ravel(), minlength=groups * 8 * banks)
            worst = counts.reshape(groups, 8, banks).max(-1)
            extra += int((worst[self._group_counted] - 1).sum())
        return float(extra * lanes)
