"""Cycle-model backends for the compute units, by name.

- `analytic`: the documented formulas themselves (sim_py/mlp_engine.py, sim_py/heu.py).
- `rtl_calibrated`: the same formula shapes with constants fitted to Verilator cycle counts by
  `make calibrate` (sim_py/calibration/rtl_calibrated.json, committed with its error report):
    MLP tile:   cycles = k_bits * K*b + k_rows * R + k_cols * C + k_tile
    HEU batch:  cycles = n * k_lookup * 8 * L + k_batch
    core:       sim_py.core's schedule with result = k_result cycles per result and
                issue = k_issue cycles before a batch's first tile
    config:     cycles = k_config * records through the core's config port
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import heu, mlp_engine
from .core import CoreTiming

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration" / "rtl_calibrated.json"
BACKENDS = ("analytic", "rtl_calibrated")


class CalibrationError(RuntimeError):
    """The calibration file is missing or unreadable."""


class Analytic:
    name = "analytic"

    @staticmethod
    def mlp_tile_cycles(k: int, wbits: int, rows: int, cols: int) -> float:
        return mlp_engine.cycles_per_tile(k, wbits, rows, cols)

    @staticmethod
    def heu_batch_cycles(n_points: int, levels: int) -> float:
        return heu.cycles_per_batch(n_points, levels)

    @staticmethod
    def heu_point_cycles(levels: int) -> float:
        return heu.cycles_per_point(levels)

    @staticmethod
    def heu_latency(levels: int) -> float:
        return heu.latency(levels)

    def core_timing(self, levels: int, tiles: float) -> CoreTiming:
        """The core's schedule for one batch's engine cycles `tiles`."""
        return CoreTiming(self.heu_point_cycles(levels), self.heu_latency(levels), tiles)

    @staticmethod
    def config_cycles(records: int) -> float:
        """The config port takes one record a cycle while the core is idle (rtl/core.py)."""
        return float(records)


@dataclass(frozen=True)
class Calibrated:
    k_bits: float
    k_rows: float
    k_cols: float
    k_tile: float
    k_lookup: float
    k_batch: float
    k_result: float
    k_issue: float
    k_config: float
    name: str = "rtl_calibrated"

    def mlp_tile_cycles(self, k: int, wbits: int, rows: int, cols: int) -> float:
        return self.k_bits * k * wbits + self.k_rows * rows + self.k_cols * cols + self.k_tile

    def heu_batch_cycles(self, n_points: int, levels: int) -> float:
        return n_points * self.k_lookup * heu.CORNERS * levels + self.k_batch

    def heu_point_cycles(self, levels: int) -> float:
        return self.k_lookup * heu.CORNERS * levels

    def heu_latency(self, levels: int) -> float:
        """From a point's handshake to its output: a batch is (n - 1) points, this, and its handshake."""
        return self.heu_point_cycles(levels) + self.k_batch - 1

    def core_timing(self, levels: int, tiles: float) -> CoreTiming:
        return CoreTiming(self.heu_point_cycles(levels), self.heu_latency(levels), tiles, self.k_result,
                          self.k_issue)

    def config_cycles(self, records: int) -> float:
        return self.k_config * records


def get_backend(name: str):
    if name == "analytic":
        return Analytic()
    if name == "rtl_calibrated":
        consts = load_calibration()["constants"]
        try:
            return Calibrated(**consts)
        except TypeError:  # a file from an older or newer model: other constants
            want = {f for f in Calibrated.__dataclass_fields__ if f != "name"}
            raise CalibrationError(f"{CALIBRATION_FILE} has the constants {', '.join(sorted(consts))}, the model "
                                   f"needs {', '.join(sorted(want))}: run `make calibrate`") from None
    raise ValueError(f"unknown hardware backend {name!r}: choose one of {', '.join(BACKENDS)}")


def load_calibration(path: Path = CALIBRATION_FILE) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{path} is missing: run `make calibrate`") from None
    except json.JSONDecodeError as e:
        raise CalibrationError(f"{path} is not valid JSON ({e}): run `make calibrate`") from None
