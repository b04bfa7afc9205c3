"""sim_py hardware descriptions and memory model."""

import numpy as np
import pytest

from hero.intarith import hash_words_per_level
from sim_py.hw import HardwareError, hardware_from_dict, load_hardware, preset_names
from sim_py.memory import (
    dram_cycles,
    entry_line,
    lru_misses,
    lru_misses_reference,
    place_levels,
)


def test_presets_load_and_derive_units():
    assert {"edge_asic", "fpga_ecp5"} <= set(preset_names())
    fpga = load_hardware("fpga_ecp5")
    assert (fpga.pe_rows, fpga.pe_cols, fpga.max_wbits) == (8, 8, 8)  # what rtl.gen builds by default
    assert fpga.table_sram_words == fpga.table_sram_kib * 1024 * 8 // fpga.heu_word_bits
    assert fpga.cache_sets * fpga.cache_ways * fpga.cache_line_bytes == fpga.cache_kib * 1024
    edge = load_hardware("edge_asic")
    assert edge.dram_bytes_per_cycle == pytest.approx(12.8e9 / 800e6)
    assert edge.sources


def test_bad_descriptions_name_the_file_and_key(tmp_path):
    with pytest.raises(HardwareError, match="no such file or preset"):
        load_hardware("nonexistent_preset")
    bad = tmp_path / "bad.toml"
    bad.write_text("clock_mhz = [")
    with pytest.raises(HardwareError, match=r"bad.toml: not valid TOML"):
        load_hardware(bad)
    raw = {k: v for k, v in vars(load_hardware("fpga_ecp5")).items() if k not in ("name", "sources")}
    with pytest.raises(HardwareError, match="cache_ways must be an integer in 1..64 and a power of two"):
        hardware_from_dict({**raw, "cache_ways": 3}, "x.toml")
    with pytest.raises(HardwareError, match="missing key.*dram_latency_ns"):
        hardware_from_dict({k: v for k, v in raw.items() if k != "dram_latency_ns"}, "x.toml")
    with pytest.raises(HardwareError, match="unknown key.*pe_rowz"):
        hardware_from_dict({**raw, "pe_rowz": 3}, "x.toml")


@pytest.mark.parametrize("sets, ways", [(1, 1), (4, 2), (16, 4), (3, 8), (0, 0)])
def test_cache_kernel_matches_reference(sets, ways):
    rng = np.random.default_rng(sets * 10 + ways)
    # A mix of reuse (small range) and streaming (large range) lines.
    lines = np.where(rng.random(4000) < 0.5, rng.integers(0, 64, 4000), rng.integers(0, 1 << 20, 4000))
    stream = rng.integers(0, 3, 4000)
    counted = rng.random(4000) < 0.7
    np.testing.assert_array_equal(lru_misses(lines, stream, 3, sets, ways),
                                  lru_misses_reference(lines, stream, 3, sets, ways))
    np.testing.assert_array_equal(lru_misses(lines, stream, 3, sets, ways, counted),
                                  lru_misses_reference(lines, stream, 3, sets, ways, counted))


def test_cache_behaviour_follows_capacity_and_associativity():
    loop = np.tile(np.arange(8), 50)  # 8 lines reused 50 times
    zeros = np.zeros_like(loop)
    assert lru_misses(loop, zeros, 1, sets=2, ways=4)[0] == 8  # fits: cold misses only
    assert lru_misses(loop, zeros, 1, sets=1, ways=4)[0] == loop.size  # LRU thrashes on a loop of 8 > 4
    conflict = np.tile(np.array([0, 4, 8]), 20)  # all map to set 0 of 4 sets
    assert lru_misses(conflict, np.zeros_like(conflict), 1, sets=4, ways=2)[0] == conflict.size
    assert lru_misses(conflict, np.zeros_like(conflict), 1, sets=4, ways=4)[0] == 3


def test_placement_puts_smallest_levels_on_chip_and_narrow_bits_fit_more():
    entries = [17**3, 33**3, 1 << 14, 1 << 14, 1 << 14]
    wide = place_levels(entries, 2, [8] * 5, 64, sram_words=12000)
    narrow = place_levels(entries, 2, [2] * 5, 64, sram_words=12000)
    assert wide.words == tuple(hash_words_per_level(e, 2, 8, 64) for e in entries)
    assert wide.on_chip_words <= 12000 and narrow.on_chip_words <= 12000
    assert sum(narrow.on_chip) > sum(wide.on_chip)
    assert wide.on_chip[0] and not wide.on_chip[1]  # the 17^3 level fits, the 33^3 one does not
    # Bases tile each memory without overlap.
    for mem in (True, False):
        spans = sorted((b, b + w) for b, w, o in zip(wide.base_word, wide.words, wide.on_chip, strict=True)
                       if o == mem)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))


def test_entry_lines_follow_packing():
    idx = np.arange(64)
    lines = entry_line(idx, base_word=0, features=2, bits=8, word_bits=64, line_bytes=64)
    assert (np.bincount(lines) == 32).all()  # 64-byte line = 512 bits = 32 entries of 16 bits
    lines4 = entry_line(idx, 0, 2, 4, 64, 64)
    assert lines4.max() == 0  # at 4 bits all 64 entries share one line


def test_dram_cycles_bandwidth_and_latency_bound():
    assert dram_cycles(0, 64, 16.0, 80) == 0
    assert dram_cycles(100, 64, 16.0, 8, outstanding=8) == 400  # bandwidth: 100 * 64 / 16
    assert dram_cycles(100, 64, 64.0, 80, outstanding=8) == 1000  # latency: 100 * 80 / 8
