"""The core under Verilator: a real quantized NeRF loaded through its config port computes the integer
path's outputs bit for bit, in the cycles sim_py.core predicts (cocotb testbench verif/tb_core.py)."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from hero import checkpoint
from hero.data.scene import load_scene
from hero.nerf.model import sh_encode
from hero.nerf.render import camera_meta, frame_samples, pixels, select_rays
from hero.quant.calib import training_samples
from hero.quant.export import load_export, save
from hero.quant.qnerf import QuantizedNeRF, calibrate_ranges
from rtl.core import Core, CoreParams
from rtl.gen import main as gen_main
from tests.test_quant import mixed_policy
from verif import sim
from verif.core_host import core_params, random_policy, save_trace

pytestmark = pytest.mark.verilator

N_SAMPLES = 20
TILE = 8  # pixels per side of the test view's tile
# (rows, cols, max_wbits, policy): the default array with the fixed mixed policy; a narrow array
# whose folds do not divide the layers and a wide one with 6-bit weights, each with a random policy.
CONFIGS = {"8x8w8": (8, 8, 8, "mixed"), "4x3w8": (4, 3, 8, 1), "2x16w6": (2, 16, 6, 2)}
TESTCASES = ["quantized_nerf_samples", "backpressure_and_gaps", "refused_config", "reset_mid_batch"]


@pytest.fixture(scope="module")
def setup(tiny_ckpt):
    model, meta = checkpoint.load(tiny_ckpt)
    scene = load_scene(meta["render"].data, "train", meta["config"].get("downscale", 1))
    pos, dirs = training_samples(meta["render"].grid, scene, meta["render"].dt, meta["render"].max_steps, n_rays=128)
    return model, meta, pos, dirs, calibrate_ranges(model, pos, dirs)


@pytest.fixture(scope="module")
def quantized(setup, tmp_path_factory):
    """policy key -> (export path, trace path of N_SAMPLES samples of many rays, QuantizedNeRF)."""
    model, _, pos, dirs, ranges = setup
    done = {}

    def get(key, max_wbits: int = 8):
        if key not in done:
            out = tmp_path_factory.mktemp(f"qcore_{key}")
            policy = mixed_policy(model) if key == "mixed" else random_policy(model, key, max_wbits)
            qn = QuantizedNeRF(model, policy, ranges)
            pick = torch.randperm(len(pos), generator=torch.Generator().manual_seed(0))[:N_SAMPLES]
            art = qn.frozen()
            save_trace(art, pos[pick], sh_encode(dirs[pick]), out / "trace.npz")
            done[key] = save(art, out / "model.npz"), out / "trace.npz", qn
        return done[key]

    return get


_BUILDS: dict = {}


def build(params: CoreParams):
    """The Verilator build of a core (converting it to Verilog takes seconds: once per module)."""
    if params not in _BUILDS:
        _BUILDS[params] = sim.build(Core(params), "core")
    return _BUILDS[params]


@pytest.fixture(scope="module", params=list(CONFIGS))
def core(request, quantized):
    rows, cols, max_wbits, policy = CONFIGS[request.param]
    model_path, trace_path, qn = quantized(policy, max_wbits)
    params = core_params(qn, rows, cols, max_wbits)
    p = {"core": asdict(params), "export": str(model_path), "trace": str(trace_path), "seed": 3}
    return build(params), p, f"core_{request.param}"


@pytest.mark.parametrize("testcase", TESTCASES)
def test_core(core, testcase):
    build, p, tag = core
    sim.run(build, "verif.tb_core", testcase, p, tag=tag)


def test_core_renders_a_tile_of_a_test_view_exactly(setup, quantized, tmp_path):
    """Every sample of a TILE x TILE pixel tile of test view 0 (after occupancy skipping) through the
    8x8 core; composited on the host, its pixels equal the integer path's rendered tile exactly."""
    model, meta, *_ = setup
    model_path, _, qn = quantized("mixed")
    test = load_scene(meta["render"].data, "test", meta["config"].get("downscale", 1))
    cam = camera_meta(test)
    r = meta["render"]
    s = frame_samples(r.grid, torch.from_numpy(test.c2w[0]), cam, r.dt, r.max_steps)
    counts = torch.bincount(s.ray_ids, minlength=s.n_rays).reshape(cam["height"], cam["width"])
    # The tile of fewest samples whose every pixel has some (a short simulation that still composites).
    tiles = [(int(counts[r:r + TILE, c:c + TILE].sum()), r, c)
             for r in range(0, cam["height"] - TILE + 1, TILE) for c in range(0, cam["width"] - TILE + 1, TILE)
             if bool((counts[r:r + TILE, c:c + TILE] > 0).all())]
    _, r0, c0 = min(tiles)
    rays = torch.tensor([(r0 + i) * cam["width"] + c0 + j for i in range(TILE) for j in range(TILE)])
    tile = select_rays(s, rays)
    sh = sh_encode(tile.directions)
    save_trace(qn.frozen(), tile.positions, sh, tmp_path / "tile.npz")
    rows, cols, max_wbits, _ = CONFIGS["8x8w8"]
    params = core_params(qn, rows, cols, max_wbits)
    out = tmp_path / "core_out.npz"
    sim.run(build(params), "verif.tb_core", "all_samples",
            {"core": asdict(params), "export": str(model_path), "trace": str(tmp_path / "tile.npz"), "out": str(out)},
            tag="core_8x8w8")
    with np.load(out) as z:
        got = pixels(*qn.host_outputs(torch.from_numpy(z["density"]), torch.from_numpy(z["color"])), tile,
                     meta["render"].background)
    want = pixels(*qn.forward_int(tile.positions, sh), tile, meta["render"].background)
    assert len(tile) > 4 * TILE * TILE
    assert torch.equal(got, want), f"the core's tile differs from the integer path's by {(got - want).abs().max()}"


def test_encoder_refuses_a_model_that_does_not_fit(quantized):
    model_path, _, qn = quantized("mixed")
    model = load_export(model_path)
    base = asdict(core_params(qn, 8, 8, 8))
    for change, msg in (({"hidden": 8}, "is not the core's density.fc0"), ({"levels": 5}, "levels=4, the core's is 5"),
                        ({"weight_depth": 64}, "weights take more than the core's 64 words")):
        with pytest.raises(ValueError, match=msg):
            CoreParams(**{**base, "depth": None, **change}).config_records(model)


@pytest.mark.parametrize("max_wbits", ["8", "7"])  # 7: the widest weight is the largest wbits field value
def test_gen_core_passes_verilator_lint(tmp_path, capsys, max_wbits):
    assert gen_main(["core", "--levels", "4", "--log2t", "10", "--hidden", "16", "--max-wbits", max_wbits,
                     "-o", str(tmp_path), "--lint"]) == 0
    assert "verilator --lint-only: clean" in capsys.readouterr().out


def test_gen_core_refuses_bad_parameters(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gen_main(["core", "--hidden", "0", "-o", str(tmp_path)])
    assert e.value.code == 2
    assert "--hidden: hidden must be an integer in 1..256" in capsys.readouterr().err
