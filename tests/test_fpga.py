"""The fpga_ecp5 preset describes the core that rtl.fpga places (docs/fpga.md); rtl.fpga's bad flags."""

import pytest

from rtl.core import CoreParams
from rtl.fpga import FPGA_CORE, main
from sim_py.hw import load_hardware


def test_fpga_ecp5_preset_describes_the_fpga_core():
    hw, p = load_hardware("fpga_ecp5"), CoreParams(**FPGA_CORE)
    assert (hw.pe_rows, hw.pe_cols, hw.max_wbits) == (p.rows, p.cols, p.max_wbits)
    assert (hw.heu_lanes, hw.heu_banks, hw.heu_word_bits) == (1, 1, p.word_bits)
    assert hw.table_sram_kib == p.depth * p.word_bits / 8 / 1024
    assert hw.weight_sram_kib >= p.weight_depth * p.cols / 8 / 1024


@pytest.mark.parametrize("argv, msg", [
    (["core", "--depth", "0"], "depth"),
    (["mlp-engine", "--rows", "0"], "rows"),
    (["core", "--device", "12k"], "--device"),
])
def test_bad_flags_are_refused_before_synthesis(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["-o", "/nonexistent/never"])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_critical_path_summary_of_a_nextpnr_report():
    from rtl.fpga import critical_path

    seg = lambda t, a, b, d: {"type": t, "from": {"cell": a}, "to": {"cell": b}, "delay": d}  # noqa: E731
    report = {"critical_paths": [{"path": [seg("clk-to-q", "q", "q", 0.5), seg("routing", "q", "l1", 1.0),
                                           seg("logic", "l1", "l1", 0.25), seg("routing", "l1", "d", 0.75),
                                           seg("setup", "d", "d", 0.0)]}]}
    assert critical_path(report) == {"from": "q", "to": "d", "logic_levels": 1, "delay_ns": 2.5}
    assert critical_path({}) == {}
