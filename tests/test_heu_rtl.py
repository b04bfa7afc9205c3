"""The hash encoding unit under Verilator: cocotb testbenches (verif/tb_heu.py) driven from pytest."""

import pytest

from rtl.gen import heu, verilator_lint, write_verilog
from verif import sim

pytestmark = pytest.mark.verilator

# (levels, features, log2t, word_bits, n_min, n_max): each has dense and hashed levels.
CONFIGS = {
    "L4F2T8w32": (4, 2, 8, 32, 4, 32),
    "L8F4T10w64": (8, 4, 10, 64, 4, 256),
    "L2F1T6w8": (2, 1, 6, 8, 3, 8000),  # level 1 at scale 7999: 13-bit grid coordinates
}
TESTCASES = ["random_and_edge_points", "every_bit_width", "output_stalls", "input_gaps", "config_refused",
             "reset_mid_batch"]


def params(config: str, **extra) -> dict:
    levels, features, log2t, word_bits, n_min, n_max = CONFIGS[config]
    dut = heu(levels, features, log2t, word_bits)
    return dut, {"levels": levels, "features": features, "log2t": log2t, "word_bits": word_bits,
                 "depth": dut.depth, "n_min": n_min, "n_max": n_max, "seed": 11, **extra}


@pytest.fixture(scope="module", params=list(CONFIGS))
def unit(request):
    dut, p = params(request.param)
    return sim.build(dut, "heu"), p, f"heu_{request.param}"


@pytest.mark.parametrize("testcase", TESTCASES)
def test_heu(unit, testcase):
    build, p, tag = unit
    sim.run(build, "verif.tb_heu", testcase, p, tag=tag)


@pytest.mark.parametrize("shape", [*CONFIGS.values(), (1, 1, 3, 8), (16, 2, 14, 32), (32, 8, 8, 64)],
                         ids=[*CONFIGS, "L1F1T3w8", "L16F2T14w32", "L32F8T8w64"])
def test_verilog_passes_verilator_lint(tmp_path, shape):
    dut = heu(*shape[:4])
    path = write_verilog(dut, "heu", tmp_path)
    res = verilator_lint(path, "heu")
    assert res.returncode == 0, res.stdout + res.stderr
