"""Hardware description: the accelerator instance that the cycle model times.

A description is a TOML file (presets in sim_py/presets/). `load_hardware(name_or_path)` reads and
validates one; every error names the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hero.cli import BadInput, read_file

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


class HardwareError(BadInput):
    """A hardware description that cannot be used, with the file and key that are wrong."""


@dataclass(frozen=True)
class HardwareConfig:
    name: str
    clock_mhz: float
    # MLP engine (rtl/mlp_engine.py)
    pe_rows: int
    pe_cols: int
    max_wbits: int
    # Hash encoding unit (rtl/heu.py): independent lanes, each one corner lookup per cycle
    heu_lanes: int
    heu_banks: int
    heu_word_bits: int
    # On-chip SRAM
    table_sram_kib: float
    weight_sram_kib: float
    # Cache for table levels that do not fit on chip, then DRAM
    cache_kib: float
    cache_line_bytes: int
    cache_ways: int
    dram_gbytes_per_s: float
    dram_latency_ns: float
    sources: str = ""

    @property
    def cycle_ns(self) -> float:
        return 1e3 / self.clock_mhz

    @property
    def table_sram_words(self) -> int:
        return int(self.table_sram_kib * 1024 * 8) // self.heu_word_bits

    @property
    def cache_sets(self) -> int:
        return int(self.cache_kib * 1024) // (self.cache_line_bytes * self.cache_ways)

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_gbytes_per_s * 1e3 / self.clock_mhz

    @property
    def dram_latency_cycles(self) -> int:
        return round(self.dram_latency_ns / self.cycle_ns)


# key: (type, lower bound, upper bound, power of two)
_RULES = {
    "clock_mhz": (float, 1.0, 10000.0, False),
    "pe_rows": (int, 1, 64, False),
    "pe_cols": (int, 1, 64, False),
    "max_wbits": (int, 2, 16, False),
    "heu_lanes": (int, 1, 64, False),
    "heu_banks": (int, 1, 64, True),
    "heu_word_bits": (int, 16, 512, True),
    "table_sram_kib": (float, 0.0, 1 << 20, False),
    "weight_sram_kib": (float, 0.0, 1 << 20, False),
    "cache_kib": (float, 0.0, 1 << 20, False),
    "cache_line_bytes": (int, 4, 1024, True),
    "cache_ways": (int, 1, 64, True),
    "dram_gbytes_per_s": (float, 0.001, 10000.0, False),
    "dram_latency_ns": (float, 0.0, 100000.0, False),
}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_hardware(name_or_path: str | Path) -> HardwareConfig:
    """A preset by name (see preset_names()) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = PRESETS_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise HardwareError(f"hardware '{name_or_path}': no such file or preset "
                                f"(presets: {', '.join(preset_names())})")
    raw = read_file(path, "a TOML file or a preset name", HardwareError, tomllib.loads, "TOML")
    return hardware_from_dict(raw, str(path))


def hardware_from_dict(raw: dict, where: str = "hardware description") -> HardwareConfig:
    flat = {}
    for section, values in raw.items():
        if isinstance(values, dict):
            flat.update(values)
        else:
            flat[section] = values
    fields = {f.name for f in dataclasses.fields(HardwareConfig)}
    unknown = sorted(set(flat) - fields)
    if unknown:
        raise HardwareError(f"{where}: unknown key(s) {', '.join(unknown)}; the keys are name, sources, "
                            f"{', '.join(_RULES)} (see sim_py/presets/)")
    for key in ("name", "sources"):
        if key in flat and not isinstance(flat[key], str):
            raise HardwareError(f"{where}: {key} must be a string, got {flat[key]!r}")
    missing = sorted(k for k in _RULES if k not in flat)
    if missing:
        raise HardwareError(f"{where}: missing key(s) {', '.join(missing)}")
    for key, (kind, lo, hi, pow2) in _RULES.items():
        value = flat[key]
        ok_type = isinstance(value, int) and not isinstance(value, bool) if kind is int else \
            isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok_type or not lo <= value <= hi or (pow2 and value & (value - 1)):
            need = f"{'an integer' if kind is int else 'a number'} in {lo}..{hi}"
            raise HardwareError(f"{where}: {key} must be {need}{' and a power of two' if pow2 else ''}, "
                                f"got {value!r}")
        flat[key] = kind(value)
    set_bytes = flat["cache_line_bytes"] * flat["cache_ways"]
    if 0 < flat["cache_kib"] * 1024 < set_bytes:
        raise HardwareError(f"{where}: cache_kib {flat['cache_kib']:g} is smaller than one set of cache_ways x "
                            f"cache_line_bytes = {set_bytes} bytes; give 0 (no cache) or at least {set_bytes / 1024:g}")
    flat.setdefault("name", Path(where).stem)
    flat.setdefault("sources", "")
    return HardwareConfig(**flat)
