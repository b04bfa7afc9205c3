"""Fast unit tests of the MLP engine's blocks in Amaranth's own simulator, and of rtl.gen."""

import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator

from hero import intarith as ia
from rtl.bitserial_pe import BitSerialPE
from rtl.mlp_engine import MLPEngine
from rtl.requantizer import Requantizer
from sim_py.mlp_engine import PRODUCT_STAGES, REQUANT_STAGES


def simulate(dut, bench, clocked=True):
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("signed", [False, True])
def test_bitserial_pe_dot_products_at_every_width(signed):
    """Sequences of weights at every width, with `clear` starting a new dot product."""
    rng = np.random.default_rng(int(signed))
    act = ia.act_format(8, signed)
    dut = BitSerialPE()
    cases = []
    for wbits in range(ia.MIN_WBITS, ia.MAX_WBITS + 1):
        wf = ia.weight_format(wbits)
        k = int(rng.integers(1, 6))
        cases.append((wbits, rng.integers(act.min, act.max + 1, k), rng.integers(wf.min, wf.max + 1, k)))
    cases.append((8, np.array([act.max, act.max]), np.array([-128, -128])))  # extreme products
    got = []

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for wbits, xs, ws in cases:
            planes = ia.weight_bitplanes(ws, wbits)
            for i, x in enumerate(xs):
                for j in range(wbits):
                    ctx.set(dut.x, int(x))
                    ctx.set(dut.w_bit, int(planes[j, i]))
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.first, j == 0)
                    ctx.set(dut.last, j == wbits - 1)
                    ctx.set(dut.clear, i == 0)
                    await ctx.tick()
                    # A bubble (valid low) between bits must not disturb the partial product.
                    ctx.set(dut.valid, 0)
                    ctx.set(dut.w_bit, 1)
                    await ctx.tick()
            got.append(ctx.get(dut.acc))
            assert ctx.get(dut.x_out) == int(xs[-1])  # operand passed on to the neighbour

    simulate(dut, bench)
    assert got == [int(xs @ ws) for _, xs, ws in cases]


def test_bitserial_pe_holds_everything_when_disabled():
    """The product register: a product reaches acc PRODUCT_STAGES enabled cycles after its last
    bit, and a disabled PE holds it pending, as it holds everything else."""
    dut = BitSerialPE()

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for j, bit in enumerate([0, 1, 1]):  # w = 3 at 3 bits, x = 5
            ctx.set(dut.x, 5)
            ctx.set(dut.w_bit, bit)
            ctx.set(dut.valid, 1)
            ctx.set(dut.first, j == 0)
            ctx.set(dut.last, j == 2)
            ctx.set(dut.clear, 1)
            await ctx.tick()
        assert ctx.get(dut.acc) == 0  # the product is in the product register
        ctx.set(dut.en, 0)
        ctx.set(dut.x, 100)
        ctx.set(dut.clear, 0)
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.acc) == 0 and ctx.get(dut.x_out) == 5  # held while disabled
        ctx.set(dut.en, 1)
        ctx.set(dut.valid, 0)
        for _ in range(PRODUCT_STAGES):
            await ctx.tick()
        assert ctx.get(dut.acc) == 15 and ctx.get(dut.x_out) == 100
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.acc) == 15  # no new product: acc stays

    simulate(dut, bench)


def requant_cases():
    rng = np.random.default_rng(5)
    accs = np.concatenate([rng.integers(-(2**31), 2**31, 40), [-(2**31), 2**31 - 1, -1, 0, 1]])
    configs = [ia.Requant(m, s, relu, ob) for m, s, relu, ob in
               [(1, 0, False, 8), (65535, 63, True, 8), (40000, 24, True, 4), (40000, 24, False, 2),
                (3, 1, False, 8), (51234, 31, True, 8), (65535, 0, False, 5)]]
    for _ in range(6):
        configs.append(ia.Requant(int(rng.integers(1, 2**16)), int(rng.integers(0, 64)),
                                  bool(rng.integers(2)), int(rng.integers(2, 9))))
    for rq in configs:
        want = ia.IntFormat(8, True).encode(ia.requantize(accs, rq)) if not rq.relu else ia.requantize(accs, rq)
        yield rq, accs, want


def set_requant(ctx, dut, rq):
    ctx.set(dut.mult, rq.mult)
    ctx.set(dut.shift, rq.shift)
    ctx.set(dut.relu, rq.relu)
    ctx.set(dut.out_bits, rq.out_bits)


def test_requantizer_matches_intarith():
    dut = Requantizer()

    async def bench(ctx):
        for rq, accs, want in requant_cases():
            set_requant(ctx, dut, rq)
            for acc, w in zip(accs, want, strict=True):
                ctx.set(dut.acc, int(acc))
                assert ctx.get(dut.q) == w, f"{rq} acc={acc}"

    simulate(dut, bench, clocked=False)


def test_pipelined_requantizer_is_the_same_function_later():
    """q is the requantization of the acc seen REQUANT_STAGES enabled cycles before; a disabled
    cycle (en low, acc changing) holds every stage."""
    dut = Requantizer(pipelined=True)

    async def bench(ctx):
        for rq, accs, want in requant_cases():
            set_requant(ctx, dut, rq)
            got, held = [], 0
            for i, acc in enumerate([*accs, *[0] * REQUANT_STAGES]):
                if i % 5 == 2:  # a bubble: en low, acc a different value
                    ctx.set(dut.en, 0)
                    ctx.set(dut.acc, int(acc) ^ 12345)
                    before = ctx.get(dut.q)
                    await ctx.tick()
                    assert ctx.get(dut.q) == before
                    held += 1
                ctx.set(dut.en, 1)
                ctx.set(dut.acc, int(acc))
                await ctx.tick()
                got.append(ctx.get(dut.q))
            assert held > 0
            assert got[REQUANT_STAGES - 1:len(accs) + REQUANT_STAGES - 1] == [int(w) for w in want], str(rq)

    simulate(dut, bench)


def test_engine_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="rows must be an integer in 1..64, got 0"):
        MLPEngine(rows=0)
    with pytest.raises(ValueError, match="max_wbits"):
        MLPEngine(max_wbits=1)
    with pytest.raises(ValueError, match="acc_bits=16 cannot hold one product"):
        MLPEngine(acc_bits=16)


def run_gen(*args):
    return subprocess.run([sys.executable, "-m", "rtl.gen", *args], capture_output=True, text=True)


def test_gen_writes_verilog_with_the_requested_shape(tmp_path):
    res = run_gen("mlp-engine", "--rows", "2", "--cols", "3", "--max-wbits", "4", "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "mlp_engine.v").read_text()
    assert "module mlp_engine(" in text
    assert "input [18:0] operand__payload;" in text  # 2 activation lanes x 8 bits + 3 weight bits
    assert "input [2:0] wbits;" in text  # runtime weight width up to max_wbits = 4


@pytest.mark.parametrize("args, message", [
    (["--rows", "0"], "--rows: rows must be an integer in 1..64, got 0"),
    (["--cols", "65"], "--cols: cols must be an integer in 1..64, got 65"),
    (["--max-wbits", "1"], "--max-wbits: max_wbits must be an integer in 2..16"),
    (["--acc-bits", "12"], "--acc-bits: acc_bits must be an integer in 16..62"),
    (["--rows", "two"], "argument --rows: invalid int value: 'two'"),
    (["--name", "9lives"], "--name must be a Verilog identifier"),
])
def test_gen_bad_parameters_get_one_clear_error(tmp_path, args, message):
    res = run_gen("mlp-engine", *args, "-o", str(tmp_path))
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())


def test_gen_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = run_gen("mlp-engine", "-o", str(blocker / "sub"))
    assert res.returncode == 2 and "cannot write there" in res.stderr and "Traceback" not in res.stderr


def test_block_diagram_follows_the_parameters(tmp_path):
    from rtl.core import CoreParams
    from rtl.diagram import labels, main

    text = labels(CoreParams(rows=4, cols=16, levels=8))
    assert "4 x 16 bit-serial PEs" in text["engine"] and "8 levels" in text["heu"]
    assert main(["--rows", "4", "-o", str(tmp_path / "core.png")]) == 0
    assert (tmp_path / "core.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        main(["--rows", "0", "-o", str(tmp_path / "bad.png")])
