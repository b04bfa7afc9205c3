"""The MLP engine under Verilator: cocotb testbenches (verif/tb_mlp_engine.py) driven from pytest."""

import pytest

from rtl.gen import mlp_engine, verilator_lint, write_verilog
from sim_py.mlp_engine import DRAIN_STAGES
from verif import sim

pytestmark = pytest.mark.verilator

# (rows, cols, max_wbits): the default, an odd non-square shape, and the smallest array.
CONFIGS = {"8x8w8": (8, 8, 8), "3x5w6": (3, 5, 6), "1x1w2": (1, 1, 2)}
TESTCASES = ["random_tiles_every_wbits", "k_sweep", "extreme_values", "back_to_back", "stalls",
             "reset_mid_operation", "invalid_config_refused"]


@pytest.fixture(scope="module", params=list(CONFIGS))
def engine(request):
    rows, cols, max_wbits = CONFIGS[request.param]
    params = {"rows": rows, "cols": cols, "max_wbits": max_wbits, "acc_bits": 32, "seed": 7}
    return sim.build(mlp_engine(rows, cols, max_wbits), "mlp_engine"), params, f"mlp_engine_{request.param}"


@pytest.mark.parametrize("testcase", TESTCASES)
def test_mlp_engine(engine, testcase):
    build, params, tag = engine
    sim.run(build, "verif.tb_mlp_engine", testcase, params, tag=tag)


@pytest.mark.parametrize("config", [*CONFIGS, "2x3w7"])  # w7: the widest weight fills its wbits field
def test_verilog_passes_verilator_lint(tmp_path, config):
    rows, cols, max_wbits = CONFIGS.get(config, (2, 3, 7))
    path = write_verilog(mlp_engine(rows, cols, max_wbits), "mlp_engine", tmp_path)
    res = verilator_lint(path, "mlp_engine")
    assert res.returncode == 0, res.stderr


def test_native_verilator_driver_counts_and_computes_exactly():
    """bench.mlp_engine's C++ driver: its cycle count and result are checked inside native_speed."""
    from bench.mlp_engine import native_speed

    res = native_speed(3, 5, 6, k=64, tiles=3)
    # k * wbits + 2R + C + the drain pipeline, per tile
    assert res["cycles"] == 3 * (64 * 6 + 2 * 3 + 5 + DRAIN_STAGES)
