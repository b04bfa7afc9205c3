"""hero.intarith's hash encoding section: properties, known values, and the float Instant-NGP encoding."""

import itertools

import numpy as np
import pytest
import torch

from hero import intarith as ia
from hero.nerf.hashgrid import encode_reference, grid_index, level_params
from sim_py.heu import cycles_per_batch, cycles_per_point, latency, memory_words
from verif.heu_ref import HeuSetup, grid_line_positions, random_points, random_setup


def test_hash_known_values():
    """(x * 1) ^ (y * 2654435761) ^ (z * 805459861) mod 2**32 mod T, values worked out by hand."""
    lv = ia.HashLevel(1 << 12, 2, False, 1 << 20, 8, 0, ia.Requant(1, 0, relu=False))
    # 2654435761 = 0x9E3779B1, 805459861 = 0x30025795.
    cases = {(0, 0, 0): 0, (1, 0, 0): 1, (0, 1, 0): 0x9E3779B1 & 0xFFFFF, (0, 0, 1): 0x30025795 & 0xFFFFF,
             (1, 1, 1): (1 ^ 0x9E3779B1 ^ 0x30025795) & 0xFFFFF,
             (0, 2, 0): (2 * 0x9E3779B1) & 0xFFFFF,  # carries out of bit 31 are dropped
             (3, 5, 7): (3 ^ ((5 * 0x9E3779B1) & 0xFFFFFFFF) ^ ((7 * 0x30025795) & 0xFFFFFFFF)) & 0xFFFFF}
    got = ia.hash_index(np.array(list(cases)), lv, 20)
    assert got.tolist() == list(cases.values())
    assert cases[(0, 2, 0)] == 0x3C6EF362 & 0xFFFFF


@pytest.mark.parametrize("log2t", [6, 10, 14, 19])
def test_index_matches_the_float_encodings_grid_index(log2t):
    """Dense and hashed indices against hero.nerf.hashgrid.grid_index (written independently)."""
    rng = np.random.default_rng(log2t)
    for p in level_params(8, 2, log2t, 4, 2048):
        lv = ia.HashLevel(ia.hash_scale_register(p["scale"]), p["resolution"], p["dense"], p["entries"], 4, 0,
                          ia.Requant(1, 0, relu=False)).check(log2t)
        top = p["resolution"] if p["dense"] else 1 << ia.HASH_COORD_BITS - 1
        v = rng.integers(0, top + 1, size=(500, 3))
        if p["dense"]:  # every corner of the cube, and the wrap-around at vertex R
            v = np.concatenate([v, np.array(list(itertools.product([0, top], repeat=3)))])
        want = grid_index(torch.from_numpy(v), p["resolution"], p["entries"], p["dense"]).numpy()
        got = ia.hash_index(v, lv, log2t)
        np.testing.assert_array_equal(got, want)
        assert got.min() >= 0 and got.max() < lv.entries


def test_grid_position_is_exact_floor_and_truncated_fraction():
    rng = np.random.default_rng(1)
    for scale in (1.0, 15.0, 22.49, 100.3, 4095.0, 8191.99):
        reg = ia.hash_scale_register(scale)
        pos = np.concatenate([random_points(rng, 300), [[0, 0, 0], [65535, 65535, 65535]]])
        corner, frac = ia.hash_grid_position(pos, reg)
        exact = pos.astype(np.float64) * reg / 2.0**28 + 0.5  # exact in float64 (41-bit products)
        np.testing.assert_array_equal(corner, np.floor(exact))
        np.testing.assert_array_equal(frac, np.floor((exact - np.floor(exact)) * 1024))
        assert corner.max() < 1 << ia.HASH_COORD_BITS


def test_grid_line_positions_have_zero_fraction():
    for scale in (15.0, 22.49, 100.3):
        reg = ia.hash_scale_register(scale)
        lines = grid_line_positions(reg)
        assert lines.size > 0
        _, frac = ia.hash_grid_position(np.stack([lines] * 3, -1), reg)
        assert (frac == 0).all()


def test_trilinear_weights_are_exact_and_sum_to_one():
    f = np.array(list(itertools.product([0, 1, 511, 512, 1023], repeat=3)))
    f = np.concatenate([f, np.random.default_rng(2).integers(0, 1024, size=(2000, 3))])
    w = ia.hash_trilinear_weights(f)
    assert w.shape == (len(f), 8)
    assert (w >= 0).all() and (w.sum(-1) == ia.HASH_WEIGHT_SUM).all()
    assert w.max() <= ia.HASH_WEIGHT_SUM and int(w.max()).bit_length() <= 3 * ia.HASH_WEIGHT_FRAC_BITS + 1
    fx, fy, fz = (f[:, a].astype(np.float64) / 1024 for a in range(3))
    np.testing.assert_array_equal(w[:, 7], np.round(fx * fy * fz * 2**30))  # corner (1, 1, 1)
    np.testing.assert_array_equal(w[:, 0], np.round((1 - fx) * (1 - fy) * (1 - fz) * 2**30))
    # torch tensors give the same
    assert torch.equal(ia.hash_trilinear_weights(torch.from_numpy(f)), torch.from_numpy(w))


@pytest.mark.parametrize("word_bits", [8, 16, 32, 64])
def test_packing_roundtrip_and_words_per_level(word_bits):
    rng = np.random.default_rng(word_bits)
    for features, bits in itertools.product([1, 2, 4, 8], range(ia.HASH_MIN_BITS, ia.HASH_MAX_BITS + 1)):
        if features * ia.HASH_MAX_BITS > word_bits:
            continue
        wf = ia.weight_format(bits)
        entries = int(rng.integers(1, 80))
        table = rng.integers(wf.min, wf.max + 1, size=(entries, features))
        words = ia.hash_pack_table(table, bits, word_bits)
        assert len(words) == ia.hash_words_per_level(entries, features, bits, word_bits)
        assert all(0 <= w < 1 << word_bits for w in words)
        back = ia.hash_unpack_entries(words, np.arange(entries), features, bits, word_bits)
        np.testing.assert_array_equal(back, table)
    # bit-packed: memory is exactly proportional to b for a full table
    t, f = 1 << 14, 2
    assert ia.hash_words_per_level(t, f, 8, 32) == 4 * ia.hash_words_per_level(t, f, 2, 32) == 8192
    assert memory_words([t, 216], 2, [3, 8], 32) == [3072, 108]


def test_memory_image_places_each_level_at_its_base():
    rng = np.random.default_rng(3)
    setup = random_setup(rng, 5, 2, 8, 32, 4, 64)
    image = setup.memory_image()
    assert len(image) == setup.words_used()
    for lv, table in zip(setup.levels, setup.tables, strict=True):
        words = [image.get(a, 0) for a in range(setup.words_used())]
        got = ia.hash_unpack_entries(words, np.arange(lv.entries), 2, lv.bits, 32, base=lv.base)
        np.testing.assert_array_equal(got, table)


def _float_reference(setup: HeuSetup, scales, pos, tables):
    """hero.nerf.hashgrid.encode_reference in float64 on the given (dequantized) tables."""
    params, offset = [], 0
    for lv, s in zip(setup.levels, scales, strict=True):
        params.append({"scale": s, "resolution": lv.resolution, "entries": lv.entries, "dense": lv.dense,
                       "offset": offset})
        offset += lv.entries
    emb = torch.from_numpy(np.concatenate(tables).astype(np.float64))
    x = torch.from_numpy(pos.astype(np.float64) / 2**16)
    return encode_reference(x, emb, params).numpy()


@pytest.mark.parametrize("levels,features,log2t,n_min,n_max", [
    (4, 2, 8, 4, 32), (6, 4, 12, 16, 512), (8, 2, 14, 16, 4096), (3, 1, 6, 3, 8000)])
def test_model_matches_float_instant_ngp_encoding_within_bound(levels, features, log2t, n_min, n_max):
    rng = np.random.default_rng(log2t)
    bits = [ia.HASH_MIN_BITS + i % 7 for i in range(levels)]
    setup = random_setup(rng, levels, features, log2t, 32, n_min, n_max, bits)
    assert any(lv.dense for lv in setup.levels) and not all(lv.dense for lv in setup.levels)
    scales = ia.hash_grid_scales(levels, n_min, n_max)
    pos = np.concatenate([random_points(rng, 3000), [[0, 0, 0], [65535] * 3, [32768] * 3]])
    for lv in setup.levels:
        lines = grid_line_positions(lv.scale)
        pos = np.concatenate([pos, np.stack([lines, lines[::-1], lines], -1)])
    # 1. Interpolation, in table LSBs, on the integer tables.
    ref = _float_reference(setup, scales, pos, setup.tables)
    out = ia.hash_encode(pos, setup.levels, setup.tables, log2t)
    for i, lv in enumerate(setup.levels):
        acc = ia.hash_level_acc(pos, lv, setup.tables[i], log2t)
        err = np.abs(acc / ia.HASH_WEIGHT_SUM - ref[:, i * features:(i + 1) * features]).max()
        assert err <= ia.hash_interp_error_bound(lv.bits), (i, lv.bits, err)
    # 2. The s8 output against the float encoding on the dequantized tables, rescaled and clamped.
    ratios = setup.ratios
    deq = [t * r for t, r in zip(setup.tables, ratios, strict=True)]
    want = np.clip(_float_reference(setup, scales, pos, deq), -128, 127)
    worst = 0.0
    for i, lv in enumerate(setup.levels):
        err = np.abs(out[:, i * features:(i + 1) * features] - want[:, i * features:(i + 1) * features]).max()
        bound = ia.hash_output_error_bound(lv, ratios[i])
        assert err <= bound, (i, lv.bits, err, bound)
        worst = max(worst, err / bound)
    assert worst > 0.3  # the bound is not vacuous


def test_torch_tensors_give_the_numpy_result():
    rng = np.random.default_rng(5)
    setup = random_setup(rng, 4, 2, 8, 32, 4, 64)
    pos = random_points(rng, 200)
    want = ia.hash_encode(pos, setup.levels, setup.tables, 8)
    got = ia.hash_encode(torch.from_numpy(pos), setup.levels, [torch.from_numpy(t) for t in setup.tables], 8)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), want)


def test_level_geometry_follows_tiny_cuda_nn():
    for p in level_params(16, 2, 14, 16, 4096):
        res, dense, entries = ia.hash_level_geometry(p["scale"], 14)
        assert (res, dense, entries) == (p["resolution"], p["dense"], p["entries"])


def test_invalid_levels_are_refused():
    rq = ia.Requant(1, 0, relu=False)
    with pytest.raises(ia.FormatError, match="scale"):
        ia.hash_scale_register(8192.0)
    with pytest.raises(ia.FormatError, match="weight bits"):
        ia.HashLevel(4096, 2, True, 8, 9, 0, rq).check(6)
    with pytest.raises(ia.FormatError, match="resolution"):
        ia.HashLevel(4096 * 3, 5, True, 128, 4, 0, rq).check(6)  # 5**3 > 64
    with pytest.raises(ia.FormatError, match="beyond resolution"):
        ia.HashLevel(4096 * 3, 3, True, 32, 4, 0, rq).check(6)  # scale 3 reaches vertex 4 > R
    with pytest.raises(ia.FormatError, match="relu"):
        ia.HashLevel(4096, 2, True, 8, 4, 0, ia.Requant(1, 0, relu=True)).check(6)
    with pytest.raises(ia.FormatError, match="hashed level entries"):
        ia.HashLevel(4096 * 30, 31, False, 32, 4, 0, rq).check(6)
    with pytest.raises(ia.FormatError, match="position"):
        ia.hash_grid_position(np.array([[65536, 0, 0]]), 4096)


def test_cycle_model():
    assert cycles_per_point(16) == 128
    assert latency(16) == 146
    assert cycles_per_batch(10, 4) == 10 * 32 + 19
    with pytest.raises(ValueError, match="n_points"):
        cycles_per_batch(0, 4)
