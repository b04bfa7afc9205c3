"""hero.intarith: the integer arithmetic contract, checked against independent definitions."""

import itertools
import math

import numpy as np
import pytest
import torch

from hero import intarith as ia


def test_formats_ranges_and_encoding_roundtrip():
    assert (ia.IntFormat(8, True).min, ia.IntFormat(8, True).max) == (-128, 127)
    assert (ia.IntFormat(8, False).min, ia.IntFormat(8, False).max) == (0, 255)
    for bits in range(2, 9):
        f = ia.IntFormat(bits, signed=True)
        values = np.arange(f.min, f.max + 1)
        raw = f.encode(values)
        assert raw.min() >= 0 and raw.max() < (1 << bits)
        assert len(set(raw.tolist())) == len(values)
        np.testing.assert_array_equal(f.decode(raw), values)
    assert ia.IntFormat(4, True).encode(-1) == 0b1111


def test_format_check_names_the_problem():
    with pytest.raises(ia.FormatError, match=r"weight out of range for s4: \[-9, 3\]"):
        ia.IntFormat(4, True).check([-9, 3], "weight")
    with pytest.raises(ia.FormatError, match="integer array"):
        ia.IntFormat(4, True).check(np.array([0.5]))
    with pytest.raises(ia.FormatError, match="weight bits"):
        ia.weight_format(9)
    with pytest.raises(ia.FormatError, match="weight bits"):
        ia.weight_format(1)


@pytest.mark.parametrize("wbits", range(ia.MIN_WBITS, ia.MAX_WBITS + 1))
def test_bitplanes_reconstruct_twos_complement(wbits):
    f = ia.weight_format(wbits)
    w = np.arange(f.min, f.max + 1)
    planes = ia.weight_bitplanes(w, wbits)
    assert planes.shape == (wbits, w.size) and set(np.unique(planes)) <= {0, 1}
    place = np.array([-(1 << (wbits - 1))] + [1 << (wbits - 1 - j) for j in range(1, wbits)])
    np.testing.assert_array_equal(np.tensordot(place, planes, axes=1), w)


@pytest.mark.parametrize("wbits", [2, 3, 4])
@pytest.mark.parametrize("signed", [False, True])
def test_bitserial_mac_exhaustive_small_widths(wbits, signed):
    """Every (activation, weight) pair of the format: the bit-serial product is the product."""
    act = ia.act_format(8, signed)
    wf = ia.weight_format(wbits)
    xs = np.arange(act.min, act.max + 1)
    ws = np.arange(wf.min, wf.max + 1)
    got = ia.bitserial_matmul(xs[:, None], ws[None, :], wbits, act)
    np.testing.assert_array_equal(got, np.outer(xs, ws))


@pytest.mark.parametrize("wbits", range(ia.MIN_WBITS, ia.MAX_WBITS + 1))
def test_bitserial_matmul_equals_matmul_on_batches(wbits):
    rng = np.random.default_rng(wbits)
    wf = ia.weight_format(wbits)
    for signed in (False, True):
        act = ia.act_format(8, signed)
        x = rng.integers(act.min, act.max + 1, size=(37, 64))
        w = rng.integers(wf.min, wf.max + 1, size=(64, 16))
        np.testing.assert_array_equal(ia.bitserial_matmul(x, w, wbits, act), x @ w)
        np.testing.assert_array_equal(ia.matmul(x, w), x @ w)


def test_torch_tensors_give_identical_results():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(9, 32))
    w = rng.integers(-8, 8, size=(32, 5))
    rq = ia.Requant(40000, 20, relu=True, out_bits=6)
    acc_np = ia.bitserial_matmul(x, w, 4)
    acc_t = ia.bitserial_matmul(torch.from_numpy(x), torch.from_numpy(w), 4)
    assert isinstance(acc_t, torch.Tensor) and acc_t.dtype == torch.int64
    np.testing.assert_array_equal(acc_t.numpy(), acc_np)
    np.testing.assert_array_equal(ia.requantize(acc_t, rq).numpy(), ia.requantize(acc_np, rq))
    with pytest.raises(ia.FormatError, match="integer tensor"):
        ia.requantize(torch.zeros(3), rq)


def test_accumulator_bound_is_tight():
    u8 = ia.act_format(8, False)
    assert ia.max_abs_product(u8, 8) == 255 * 128
    kmax = ia.max_k_without_overflow(32, u8, 8)
    assert kmax == (2**31 - 1) // (255 * 128) == 65793
    assert kmax * 255 * 128 <= 2**31 - 1 < (kmax + 1) * 255 * 128
    assert kmax >= (1 << 16) - 1  # the engine's 16-bit k port can never overflow s32
    assert ia.acc_bits_required(kmax, u8, 8) == 32
    for k in (1, 64, 1000):
        bits = ia.acc_bits_required(k, u8, 8)
        worst = k * 255 * 128
        assert worst <= 2 ** (bits - 1) - 1 and worst > 2 ** (bits - 2) - 1


def _requant_reference(acc: int, mult: int, shift: int, relu: bool, out_bits: int) -> int:
    """Independent definition with exact rationals: round half up, then clamp."""
    value = math.floor(acc * mult / 2**shift + 0.5) if shift else acc * mult
    lo, hi = (0, 2**out_bits - 1) if relu else (-(2 ** (out_bits - 1)), 2 ** (out_bits - 1) - 1)
    return min(max(value, lo), hi)


def test_requantize_matches_exact_rational_definition():
    rng = np.random.default_rng(3)
    accs = np.concatenate([rng.integers(-(2**31), 2**31, 300), np.arange(-40, 41),
                           [-(2**31), 2**31 - 1]])
    for mult, shift, relu, out_bits in itertools.product([1, 3, 40000, 65535], [0, 1, 7, 16, 31, 47, 63],
                                                         [False, True], [2, 5, 8]):
        rq = ia.Requant(mult, shift, relu, out_bits)
        got = ia.requantize(accs, rq)
        want = [_requant_reference(int(a), mult, shift, relu, out_bits) for a in accs]
        np.testing.assert_array_equal(got, want, err_msg=str(rq))


def test_requantize_rounds_half_up_and_relu_is_the_lower_clamp():
    rq = ia.Requant(1, 1, relu=False, out_bits=8)  # y = round(acc / 2)
    np.testing.assert_array_equal(ia.requantize([-3, -2, -1, 0, 1, 2, 3], rq), [-1, -1, 0, 0, 1, 1, 2])
    relu = ia.Requant(1, 0, relu=True, out_bits=4)
    np.testing.assert_array_equal(ia.requantize([-5, 0, 7, 15, 16, 900], relu), [0, 0, 7, 15, 15, 15])


def test_per_channel_requant_applies_each_channels_entry():
    """Channel c of the last axis uses (mult[c], shift[c]), for numpy and torch alike."""
    rng = np.random.default_rng(5)
    mult = tuple(int(m) for m in rng.integers(1, 2**16, 7))
    shift = tuple(int(s) for s in rng.integers(0, 64, 7)[:6]) + (0,)
    accs = rng.integers(-(2**31), 2**31, size=(40, 7))
    for relu, out_bits in ((False, 8), (True, 3)):
        rq = ia.Requant(mult, shift, relu, out_bits)
        got = ia.requantize(accs, rq)
        want = [[_requant_reference(int(a), mult[c], shift[c], relu, out_bits) for c, a in enumerate(row)]
                for row in accs]
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(ia.requantize(torch.from_numpy(accs), rq).numpy(), got)
        assert rq.select(slice(2, 4)) == ia.Requant(mult[2:4], shift[2:4], relu, out_bits)
    rq = ia.Requant.from_scale([1e-3, 0.25, 7.0], relu=False)
    assert rq.channels == 3 and np.allclose(rq.scale, [1e-3, 0.25, 7.0], rtol=2**-15)
    assert ia.Requant([5, 6], np.array([1, 2])) == ia.Requant((5, 6), (1, 2))  # lists and arrays become tuples
    with pytest.raises(ia.FormatError, match="3 channels"):
        ia.requantize(accs[:, :4], rq)
    with pytest.raises(ia.FormatError, match="one entry per channel"):
        ia.Requant((1, 2), (0,))
    with pytest.raises(ia.FormatError, match="mult"):
        ia.Requant((1, 0), (0, 0))
    with pytest.raises(ia.FormatError, match="one \\(mult, shift\\)"):
        ia.HashLevel(4096, 2, True, 8, 4, 0, ia.Requant((1, 1), (0, 0), relu=False)).check(6)


@pytest.mark.parametrize("scale", [1e-9, 3.3e-5, 0.0123, 0.5, 0.999999, 1.0, 1.5, 77.7, 65000.0])
def test_quantize_multiplier_precision(scale):
    mult, shift = ia.quantize_multiplier(scale)
    assert 1 <= mult < 2**16 and 0 <= shift <= 63
    assert abs(mult / 2**shift - scale) / scale < 2**-15
    if 2 ** (16 - 63) < scale < 2**15:
        assert mult >= 2**15  # normalised: all 16 bits significant


def test_requant_parameter_errors_are_clear():
    with pytest.raises(ia.FormatError, match="mult"):
        ia.Requant(0, 4)
    with pytest.raises(ia.FormatError, match="shift"):
        ia.Requant(3, 64)
    with pytest.raises(ia.FormatError, match="activation bits"):
        ia.Requant(3, 4, out_bits=9)
    with pytest.raises(ia.FormatError, match="finite positive"):
        ia.quantize_multiplier(-1.0)
    with pytest.raises(ia.FormatError, match="too large"):
        ia.quantize_multiplier(2.0**17)


def test_linear_layer_checks_the_accumulator():
    x = np.full((1, 4), 255)
    w = np.full((4, 1), -128)
    rq = ia.Requant.from_scale(1 / 512, relu=False)
    assert ia.linear_layer(x, w, 8, rq, ia.act_format(8)).item() == ia.requantize(-4 * 255 * 128, rq)
    with pytest.raises(ia.FormatError, match="accumulator"):
        ia.linear_layer(x, w, 8, None, ia.act_format(8), acc_bits=16)
