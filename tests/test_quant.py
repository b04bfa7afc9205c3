"""hero.quant: policies, the fake-quant and integer paths, size, export."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from hero import checkpoint
from hero import intarith as ia
from hero.nerf.model import sh_encode
from hero.quant.calib import checkpoint_scene, rendering_importance, training_march, training_samples
from hero.quant.export import export as export_model
from hero.quant.export import frozen, load_export
from hero.quant.export import meta as export_meta
from hero.quant.policy import Policy, PolicyError, load_policy, policy_from_dict
from hero.quant.qnerf import (
    SH_STEPS,
    QuantizedNeRF,
    calibrate_ranges,
    fp32_size_bits,
    gptq_round,
    mse_scale,
    output_error_scale,
    quantize_symmetric,
    symmetric_scale,
)
from rtl.heu import level_record

MIXED = {"tables": [8, 5, 3, 2], "weights": [8, 4, 6, 3, 5], "activations": [8, 6, 5, 4, 7]}


@pytest.fixture(scope="module")
def setup(tiny_ckpt):
    model, meta = checkpoint.load(tiny_ckpt)
    scene = checkpoint_scene(meta, "train")
    pos, dirs = training_samples(meta["render"].grid, scene, meta["render"].dt, meta["render"].max_steps, n_rays=256)
    return model, pos, dirs, calibrate_ranges(model, pos, dirs)


def mixed_policy(model) -> Policy:
    units = model.quant_units()
    levels = [n for n, k, _ in units if k == "hash_level"]
    layers = [n for n, k, _ in units if k == "linear"]
    return Policy(dict(zip(levels, MIXED["tables"], strict=True)), dict(zip(layers, MIXED["weights"], strict=True)),
                  dict(zip(layers, MIXED["activations"], strict=True)))


def test_policy_roundtrip_and_errors(setup, tmp_path):
    model = setup[0]
    pol = mixed_policy(model)
    pol.save(tmp_path / "p.json")
    assert load_policy(tmp_path / "p.json", model) == pol
    raw = pol.to_dict()
    cases = [
        ({**raw, "tables": {k: v for k, v in raw["tables"].items() if k != "grid.level02"}},
         "tables has no entry for grid.level02"),
        ({**raw, "weights": {**raw["weights"], "density.fc9": 4}}, "weights names unknown unit(s) density.fc9"),
        ({**raw, "weights": {**raw["weights"], "color.fc1": 9}}, "weights.color.fc1 must be an integer in 2..8"),
        ({**raw, "activations": {**raw["activations"], "density.fc0": 4}}, "activations.density.fc0 is the hash"),
        ({**raw, "format": "other"}, "format 'other' is not"),
        ([1, 2], "expected a JSON object"),
    ]
    for bad, message in cases:
        with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
            policy_from_dict(bad, model, "p.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PolicyError, match="bad.json: not valid JSON"):
        load_policy(tmp_path / "bad.json", model)


@pytest.mark.parametrize("fuse", [True, False])
def test_fake_quant_and_integer_paths_agree(setup, fuse):
    model, pos, dirs, ranges = setup
    qn = QuantizedNeRF(model, mixed_policy(model), ranges, fuse_relu=fuse)
    n = 2000
    with torch.no_grad():
        sf, cf = qn.forward_fake(pos[:n], sh_encode(dirs[:n]))
    si, ci = qn.forward_int(pos[:n], sh_encode(dirs[:n]))
    # The paths share every integer; they differ only by the HEU's fixed-point position and weights
    # (docs/arithmetic.md section 6), which flips an output code now and then.
    assert float((cf - ci).abs().mean()) < 2e-3
    assert float(((sf - si).abs() / (sf.abs() + 1e-2)).mean()) < 2e-2


def test_integer_path_uses_the_formats_of_the_policy(setup):
    model, pos, dirs, ranges = setup
    qn = QuantizedNeRF(model, mixed_policy(model), ranges)
    t = qn.trace_int(pos[:500], sh_encode(dirs[:500]))
    assert ia.IntFormat(8, True).check(t["encoding"]) is not None
    for q, a in zip(qn.layers, MIXED["activations"], strict=True):
        assert q.in_fmt.bits == a
        q.in_fmt.check(t[f"in.{q.name}"], q.name)  # every input fits its format
        ia.weight_format(q.bits).check(q.w_int, q.name)
        assert q.w_int.abs().max() <= (1 << (q.bits - 1)) - 1  # symmetric range
    assert qn.layers[1].in_fmt == ia.IntFormat(6, False)  # after a fused ReLU: unsigned
    assert qn.layers[2].in_fmt == ia.IntFormat(5, True)  # geometry features and SH: signed
    for lv, b in zip(qn.levels, MIXED["tables"], strict=True):
        assert lv.bits == b


def test_eight_bits_is_close_to_float_and_two_bits_is_not(setup):
    model, pos, dirs, ranges = setup
    sh = sh_encode(dirs)
    with torch.no_grad():
        _, c0 = model(pos, dirs)
        err = {b: float((QuantizedNeRF(model, Policy.uniform(model, b), ranges).forward_fake(pos, sh)[1] - c0)
                        .abs().mean()) for b in (8, 2)}
    assert err[8] < 5e-3 and err[2] > 2 * err[8]


def test_fake_quant_is_differentiable(setup):
    model, pos, dirs, ranges = setup
    qn = QuantizedNeRF(model, Policy.uniform(model, 4), ranges)
    model.zero_grad()
    _, rgb = qn.forward_fake(pos[:256], sh_encode(dirs[:256]))
    rgb.sum().backward()
    assert model.color.fc0.weight.grad.abs().sum() > 0 and model.grid.embeddings.grad.abs().sum() > 0
    model.zero_grad()


def test_size_counts_bits(setup):
    model, _, _, ranges = setup
    q8, q4 = (QuantizedNeRF(model, Policy.uniform(model, b), ranges).size_bits() for b in (8, 4))
    assert q8["tables"] == 2 * q4["tables"] and q8["weights"] == 2 * q4["weights"]
    params = sum(info["params"] for _, _, info in model.quant_units())
    assert q8["tables"] + q8["weights"] == 8 * params and fp32_size_bits(model) == 32 * params
    # registers: per level a scale register and a requant; per output channel a requant and a float scale
    channels = sum(lin.out_features for lin in (model.density.fc0, model.density.fc1, model.color.fc0,
                                                model.color.fc1, model.color.fc2))
    assert q8["scales"] == model.grid.levels * (25 + 22) + channels * (22 + 32) + 64
    assert q8["scales"] < 0.03 * q8["total"]


def test_export_roundtrip(setup, tmp_path):
    model, pos, dirs, ranges = setup
    qn = QuantizedNeRF(model, mixed_policy(model), ranges)
    mask = os.umask(0o022)
    try:
        path = export_model(qn, tmp_path / "q.npz")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the umask's permissions, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["q.npz"]  # no temporary file left behind
    ex = load_export(path)
    assert ex.levels == qn.levels
    for t_ex, t in zip(ex.tables, qn.tables_int(), strict=True):
        np.testing.assert_array_equal(t_ex, t.numpy())
    for lx, q in zip(ex.layers, qn.layers, strict=True):
        torch.testing.assert_close(lx.w_int, q.w_int, rtol=0, atol=0)
        assert (lx.rq, lx.in_fmt, lx.bits) == (q.rq, q.in_fmt, q.bits)
    # The packed memory image unpacks to the tables, at every level's base and width.
    for lv, t in zip(ex.levels, ex.tables, strict=True):
        idx = np.arange(len(t))
        got = ia.hash_unpack_entries(ex.table_memory.tolist(), idx, ex.features, lv.bits, ex.word_bits, lv.base)
        np.testing.assert_array_equal(got, t)
    meta = json.loads(json.dumps(export_meta(ex)))
    assert meta["format"] == "hero-qmodel/3" and meta["policy"]["tables"]["grid.level03"] == 2
    # The HEU's registers in the file are the unit's own encoder's (a hashed level's resolution 0).
    assert meta["heu_config"] == [level_record(i, lv) for i, lv in enumerate(qn.levels)]
    # The file form reads back as the artifact itself (hero.quant.export.frozen), field for field.
    art = frozen(qn)
    assert (export_meta(art), art.levels, art.grid, art.table_scales) == (export_meta(ex), ex.levels, ex.grid,
                                                                          ex.table_scales)
    assert (art.enc_scale, art.sh_scale, art.policy) == (ex.enc_scale, ex.sh_scale, ex.policy)
    np.testing.assert_array_equal(art.table_memory, ex.table_memory)
    for a, b in zip(art.tables, ex.tables, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(art.layers, ex.layers, strict=True):
        for f in ("w_int", "w_scale", "out_scale", "in_scale", "w_offset"):
            torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=0, atol=0, msg=f"{a.name}.{f}")
        assert (a.name, a.bits, a.in_fmt, a.rq, a.relu_after) == (b.name, b.bits, b.in_fmt, b.rq, b.relu_after)
    # The integer path computes on the artifact: the file's, read back, gives every integer again.
    sh = sh_encode(dirs[:300])
    want, got = qn.trace_int(pos[:300], sh), ex.trace_int(pos[:300], sh)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    with pytest.raises(ValueError, match="no such file"):
        load_export(tmp_path / "none.npz")


def test_kmeans_tables_beat_uniform_at_low_bits(setup):
    """Clustered tables fit the value distribution: less table error than uniform at 2 and 3 bits."""
    from hero.quant.kmeans import kmeans_1d

    model, pos, dirs, ranges = setup
    table = model.grid.table(3).detach()
    for bits in (2, 3):
        cb, idx = kmeans_1d(table, 1 << bits)
        assert len(cb) == 1 << bits and (cb[1:] >= cb[:-1]).all()
        err_k = float((cb[idx].float() - table).pow(2).mean())
        qn = QuantizedNeRF(model, Policy.uniform(model, 8, table_bits=bits), ranges)
        s = qn.table_scale[3]
        err_u = float((quantize_symmetric(table, bits, s) * s - table).pow(2).mean())
        assert err_k < err_u
    qk = QuantizedNeRF(model, Policy.uniform(model, 8, table_bits=2), ranges, tables="kmeans")
    assert qk.size_bits()["codebooks"] == 32 * 4 * len(qk.levels)
    with torch.no_grad():
        _, rgb = qk.forward_fake(pos[:200], sh_encode(dirs[:200]))
    assert torch.isfinite(rgb).all()
    with pytest.raises(NotImplementedError, match="no codebook stage"):
        qk.forward_int(pos[:10], sh_encode(dirs[:10]))


def test_clipping_scales_lower_the_error_at_low_bits(setup):
    """mse_scale beats max-abs on a heavy-tailed tensor; output_error_scale beats both on the layer's output."""
    torch.manual_seed(0)
    x = torch.randn(20000) ** 3  # heavy tails
    for bits in (3, 4):
        err = {f.__name__: float((quantize_symmetric(x, bits, s := f(x, bits)) * s - x).pow(2).mean())
               for f in (symmetric_scale, mse_scale)}
        assert err["mse_scale"] < 0.8 * err["symmetric_scale"], err
    model, pos, dirs, ranges = setup
    w = model.color.fc1.weight.detach().double().t()
    xin = ranges.samples["color.fc1"].double()
    assert xin.shape == (min(4096, len(pos)), w.shape[0])

    def out_err(s):
        return float((xin @ (w - quantize_symmetric(w, 3, s) * s)).pow(2).sum())

    s_layer = output_error_scale(w, 3, xin, per_channel=False)
    assert s_layer.shape == (w.shape[1],) and bool((s_layer == s_layer[0]).all())
    assert out_err(s_layer) <= min(out_err(symmetric_scale(w, 3)), out_err(mse_scale(w, 3))) + 1e-12
    s_out = output_error_scale(w, 3, xin)  # one scale per output column
    assert out_err(s_out) < 0.95 * out_err(s_layer)
    qo = QuantizedNeRF(model, Policy.uniform(model, 3), ranges)  # default: output-error scales
    qm = QuantizedNeRF(model, Policy.uniform(model, 3), ranges, scales="max")
    so, sm = qo.layers[3].w_scale, qm.layers[3].w_scale  # (input scales differ by the requant's 2**-16)
    assert bool((so <= sm * (1 + 1e-4)).all() and (so < 0.9 * sm).any()) and qo.table_scale[-1] < qm.table_scale[-1]
    with pytest.raises(ValueError, match="scales must be one of"):
        QuantizedNeRF(model, Policy.uniform(model, 8), ranges, scales="minmax")


def test_gptq_rounding_lowers_every_layers_output_error(setup):
    """Same scales and formats as rounding to nearest; less output error on the calibration inputs;
    the fake-quant path computes with GPTQ's integers."""
    model, pos, dirs, ranges = setup
    qg = QuantizedNeRF(model, Policy.uniform(model, 4), ranges)  # default: GPTQ
    qr = QuantizedNeRF(model, Policy.uniform(model, 4), ranges, rounding="nearest")
    total = {"gptq": 0.0, "nearest": 0.0}
    for g, r in zip(qg.layers, qr.layers, strict=True):
        assert torch.equal(g.w_scale, r.w_scale) and torch.equal(g.in_scale, r.in_scale) and g.rq == r.rq
        assert r.w_offset is None and torch.equal(g.w_int - g.w_offset, r.w_int)
        ia.weight_format(4).check(g.w_int, g.name)
        lin = model.get_submodule(g.name)
        w = lin.weight.detach().double().t() * g.in_scale[:, None]
        x = ranges.samples[g.name].double() / g.in_scale[None, :]
        err = {k: float((x @ (w - q.w_int.double() * q.w_scale)).pow(2).sum())
               for k, q in (("gptq", g), ("nearest", r))}
        assert err["gptq"] <= err["nearest"] * (1 + 1e-9), (g.name, err)
        total = {k: total[k] + v for k, v in err.items()}
        fq = qg._fq_weight(g, lin).double()
        torch.testing.assert_close(fq, g.w_int.double() * g.w_scale / g.in_scale[:, None], rtol=1e-6, atol=1e-9)
    assert total["gptq"] < 0.9 * total["nearest"], total
    assert torch.equal(gptq_round(w, 4, g.w_scale, x), g.w_int)  # memoized, and the memo is not shared state
    with pytest.raises(ValueError, match="rounding must be one of"):
        QuantizedNeRF(model, Policy.uniform(model, 8), ranges, rounding="stochastic")


def test_per_channel_scales_and_the_sh_step(setup):
    """One scale per output channel: every layer's output error at most one scale per layer's; the
    requantizers are per channel and land on the next layer's input scale. The SH step is the one of
    least colour-layer output error among SH_STEPS."""
    model, pos, dirs, ranges = setup
    pol = Policy.uniform(model, 4)
    qc = QuantizedNeRF(model, pol, ranges, rounding="nearest")
    ql = QuantizedNeRF(model, pol, ranges, rounding="nearest", granularity="layer", sh_steps=(SH_STEPS[0],))
    qs = QuantizedNeRF(model, pol, ranges, rounding="nearest", sh_steps=(SH_STEPS[0],))
    for c, lay in zip(qc.layers, ql.layers, strict=True):
        assert c.w_scale.shape == (c.w_int.shape[1],) and len(set(lay.w_scale.tolist())) == 1
        if c.rq is not None:
            assert c.rq.channels == len(c.out_scale) and c.rq.channels in (c.w_int.shape[1], c.w_int.shape[1] - 1)
            target = ranges.inputs["color.fc0.geo" if c.name == "density.fc1" else
                                   {"density.fc0": "density.fc1", "color.fc0": "color.fc1",
                                    "color.fc1": "color.fc2"}[c.name]] / c.rq.out_format.max
            torch.testing.assert_close(c.out_scale, torch.full_like(c.out_scale, target), rtol=2e-5, atol=0)

    def out_err(q):
        lin = model.get_submodule(q.name)
        x = ranges.samples[q.name].double()
        xq = torch.clamp(torch.floor(x / q.in_scale + 0.5), q.in_fmt.min, q.in_fmt.max)
        return float((x @ lin.weight.detach().double().t() - xq @ (q.w_int * q.w_scale)).pow(2).sum())

    for c, s1 in zip(qc.layers, qs.layers, strict=True):
        if c.name != "color.fc0":
            assert torch.equal(c.w_int, s1.w_int)
    step = qc.sh_scale * qc.layers[2].in_fmt.max / ranges.inputs["color.fc0.sh"]
    assert min(abs(step - k) for k in SH_STEPS) < 1e-9
    assert out_err(qc.layers[2]) <= out_err(qs.layers[2]) * (1 + 1e-9)
    assert sum(out_err(c) for c in qs.layers) < sum(out_err(lay) for lay in ql.layers)
    with pytest.raises(ValueError, match="granularity must be one of"):
        QuantizedNeRF(model, pol, ranges, granularity="tensor")
    with pytest.raises(ValueError, match="sh_steps"):
        QuantizedNeRF(model, pol, ranges, sh_steps=(0.5,))


def test_weight_calibration_inputs_follow_the_rendered_light(tiny_ckpt):
    """Density inputs are drawn by transmittance, colour inputs by rendering weight."""
    model, meta = checkpoint.load(tiny_ckpt)
    scene = checkpoint_scene(meta, "train")
    s = training_march(meta["render"].grid, scene, meta["render"].dt, meta["render"].max_steps, n_rays=256)
    imp = rendering_importance(model, s)
    for p in imp.values():
        assert len(p) == len(s) and float(p.min()) > 0 and abs(float(p.sum()) - 1) < 1e-9
    same_ray = s.ray_ids[1:] == s.ray_ids[:-1]
    d = imp["density"]
    assert (d[1:][same_ray] <= d[:-1][same_ray] * (1 + 1e-6)).all()  # transmittance never rises along a ray
    assert float(imp["color"].max()) > 10 * float(imp["color"].min())  # rendering weight concentrates
    point = torch.zeros(len(s), dtype=torch.float64)
    point[7] = 1.0
    r = calibrate_ranges(model, s.positions, s.directions, n_samples=300, importance={"density": imp["density"],
                                                                                       "color": point})
    c0 = r.samples["color.fc0"]
    assert c0.shape[0] == 300 and torch.equal(c0, c0[:1].expand_as(c0))  # every draw is sample 7
    assert len(r.samples["density.fc1"].unique(dim=0)) > 50
    full = calibrate_ranges(model, s.positions, s.directions)
    assert r.inputs == full.inputs and r.encoding == full.encoding  # ranges: over all samples
