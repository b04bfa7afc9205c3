"""A real quantized NeRF through the RTL: its exported integers on the MLP engine and the HEU under
Verilator equal the integer inference path bit for bit (the contract of docs/arithmetic.md)."""

import pytest

from hero import checkpoint
from hero.nerf.model import sh_encode
from hero.quant.calib import checkpoint_scene, training_samples
from hero.quant.export import save
from hero.quant.qnerf import QuantizedNeRF, calibrate_ranges
from rtl.gen import heu, mlp_engine
from tests.test_quant import mixed_policy
from verif import sim
from verif.core_host import save_trace

pytestmark = pytest.mark.verilator


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("qrtl")
    model, meta = checkpoint.load(tiny_ckpt)
    scene = checkpoint_scene(meta, "train")
    pos, dirs = training_samples(meta["render"].grid, scene, meta["render"].dt, meta["render"].max_steps, n_rays=128)
    qn = QuantizedNeRF(model, mixed_policy(model), calibrate_ranges(model, pos, dirs))
    n = 16
    art = qn.frozen()
    save_trace(art, pos[:n], sh_encode(dirs[:n]), out / "trace.npz")
    return save(art, out / "model.npz"), out / "trace.npz", qn


def test_mlp_engine_runs_the_quantized_nerf_bit_exactly(exported):
    model_path, trace_path, _ = exported
    build = sim.build(mlp_engine(8, 8, 8), "mlp_engine")
    sim.run(build, "verif.tb_mlp_engine", "replay_quantized_nerf",
            {"rows": 8, "cols": 8, "max_wbits": 8, "acc_bits": 32, "export": str(model_path),
             "trace": str(trace_path)})


def test_heu_encodes_the_quantized_nerf_bit_exactly(exported):
    model_path, trace_path, qn = exported
    g = qn.grid
    dut = heu(g.levels, g.features, g.log2T, qn.word_bits)
    build = sim.build(dut, "heu")
    sim.run(build, "verif.tb_heu", "replay_quantized_nerf",
            {"levels": g.levels, "features": g.features, "log2t": g.log2T, "word_bits": qn.word_bits,
             "depth": dut.depth, "export": str(model_path), "trace": str(trace_path), "seed": 1})
