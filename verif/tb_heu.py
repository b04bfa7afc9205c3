"""cocotb testbench for rtl.heu.HEU, run under Verilator by tests/test_heu_rtl.py and bench/heu.py.

Every result is checked bit for bit against verif.heu_ref (hero.intarith), and the cycle counter
against sim_py.heu.cycles_per_batch.
"""

from __future__ import annotations

import itertools
import json
import time

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from hero import intarith as ia
from rtl.heu import config_layout, point_layout, result_layout, table_layout
from sim_py.heu import cycles_per_batch
from verif.heu_ref import HeuSetup, edge_points, random_points, random_setup
from verif.sim import tb_params
from verif.stream import Driver, Monitor, now_cycles, start_clock


class HeuHarness:
    """Drives the HEU's ports cycle by cycle and collects what it returns."""

    def __init__(self, dut, seed: int):
        p = tb_params()
        self.p = p
        self.dut = dut
        self.L, self.F, self.log2t, self.W = p["levels"], p["features"], p["log2t"], p["word_bits"]
        self.depth = p["depth"]
        self.config_layout = config_layout(self.L, self.log2t, self.depth)
        self.table_layout = table_layout(self.W, self.depth)
        self.point_layout = point_layout()
        self.result_layout = result_layout(self.L, self.F)
        self.rng = np.random.default_rng(seed)
        self.configs = Driver(dut, "config")
        self.tables = Driver(dut, "table")
        self.points = Driver(dut, "point", self.rng)
        self.results = Monitor(dut, "result", self.rng)
        self.sim_cycles = 0  # cycles spent in run_points, for the simulation speed
        self.sim_seconds = 0.0
        self.setup: HeuSetup | None = None

    async def start(self):
        start_clock(self.dut)
        for name in ("clear", "rst"):
            getattr(self.dut, name).value = 0
        self.dut.rst.value = 1
        await self.tick()
        await self.tick()
        self.dut.rst.value = 0
        await self.tick()

    @property
    def edges(self) -> int:
        return now_cycles()

    async def tick(self):
        await RisingEdge(self.dut.clk)

    def new_setup(self, bits=None) -> HeuSetup:
        p = self.p
        return random_setup(self.rng, self.L, self.F, self.log2t, self.W, p["n_min"], p["n_max"], bits)

    async def write_config(self, record: dict) -> int:
        """Write one config record; returns `error` as seen in the next cycle."""
        await self.configs.send([self.config_layout.const(record).as_bits()])
        await ReadOnly()
        err = int(self.dut.error.value)
        await self.tick()
        return err

    async def load(self, setup: HeuSetup):
        """Configuration registers of every level, then the packed tables, word by word."""
        assert setup.words_used() <= self.depth, "tables do not fit the memory"
        for rec in setup.config_records():
            assert await self.write_config(rec) == 0, f"config record refused: {rec}"
        await self.write_tables(sorted(setup.memory_image().items()))
        self.setup = setup

    async def write_tables(self, words):
        """(address, word) pairs through the always-ready table port, one per cycle."""
        await self.tables.send(self.table_layout.const({"addr": a, "data": int(w)}).as_bits() for a, w in words)

    async def run_points(self, pos: np.ndarray, p_valid: float = 1.0, p_ready: float = 1.0,
                         hold: int = 1) -> tuple[np.ndarray, int, int]:
        """Send the points, collect their results, check them bit for bit and the cycle counters.

        Each cycle a point is offered with probability p_valid and `ready` raised with probability
        p_ready; once lowered, `ready` stays low for 1 to `hold` cycles (long refusals stop the
        pipeline)."""
        d = self.dut
        n = len(pos)
        words = [self.point_layout.const(list(map(int, q))).as_bits() for q in pos]
        d.clear.value = 1
        await self.tick()
        d.clear.value = 0
        t0, c0 = time.perf_counter(), self.edges
        self.points.start(words, p_valid)
        raw = await self.results.receive(n, p_ready, hold)
        out = [list(self.result_layout.from_bits(v)) for v in raw]
        self.sim_cycles += self.edges - c0
        self.sim_seconds += time.perf_counter() - t0
        await ReadOnly()
        got = np.array(out, dtype=np.int64)
        self.check(pos, got)
        cycles, stalls, points = int(d.cycles.value), int(d.stall_cycles.value), int(d.points.value)
        assert d.busy.value == 0, "HEU still busy after the last result"
        assert points == n, f"points counter {points}, sent {n}"
        expected = cycles_per_batch(n, self.L)
        assert p_ready < 1 or stalls == 0, f"{stalls} stall cycles with no result refused"
        if self.p.get("measure_only"):  # calibration measures without assuming the formula
            pass
        elif p_valid >= 1:
            assert cycles == expected + stalls, f"{n} points: {cycles} cycles, formula {expected} + {stalls}"
        else:
            assert cycles >= expected + stalls, f"{n} points: {cycles} cycles < formula {expected} + {stalls}"
        await self.tick()
        return got, cycles, stalls

    def check(self, pos: np.ndarray, got: np.ndarray):
        want = self.setup.expected(pos)
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            i, lane = (int(v) for v in bad[0])
            lv = self.setup.levels[lane // self.F]
            raise AssertionError(f"{len(bad)} lanes differ; first: point {pos[i].tolist()} lane {lane} "
                                 f"(level {lane // self.F}, {lv}): got {got[i, lane]}, want {want[i, lane]}")

    def report(self, **figures):
        """Write figures for bench/heu.py to the file it named, if any."""
        path = self.p.get("report")
        if path:
            with open(path, "w") as f:
                json.dump(figures, f)


async def harness(dut) -> HeuHarness:
    h = HeuHarness(dut, seed=tb_params().get("seed", 1))
    await h.start()
    return h


@cocotb.test()
async def random_and_edge_points(dut):
    """Random points and edge points (0, just below 1, on grid lines) at mixed widths, back to back."""
    h = await harness(dut)
    setup = h.new_setup()
    dense = [lv.dense for lv in setup.levels]
    assert any(dense) and not all(dense), f"the parameter set should have dense and hashed levels: {dense}"
    await h.load(setup)
    await h.run_points(edge_points(setup, h.rng))
    await h.run_points(random_points(h.rng, 40))
    await h.run_points(random_points(h.rng, 1))


@cocotb.test()
async def every_bit_width(dut):
    """Every table width b_l from 2 to 8 on all levels, then all widths mixed over the levels."""
    h = await harness(dut)
    for bits in range(ia.HASH_MIN_BITS, ia.HASH_MAX_BITS + 1):
        setup = h.new_setup(bits)
        await h.load(setup)
        pts = np.concatenate([random_points(h.rng, 12), edge_points(setup, h.rng)[:6]])
        await h.run_points(pts)
    mixed = [ia.HASH_MIN_BITS + (i * 5) % 7 for i in range(h.L)]
    await h.load(h.new_setup(mixed))
    await h.run_points(random_points(h.rng, 16))


@cocotb.test()
async def output_stalls(dut):
    """Refused results: exact results, payload held, cycles = formula + stall_cycles."""
    h = await harness(dut)
    await h.load(h.new_setup())
    for p_ready, hold in ((0.5, 1), (0.9, 1), (0.7, 4 * 8 * h.L), (0.2, 3 * 8 * h.L)):
        _, _, stalls = await h.run_points(random_points(h.rng, 10), p_ready=p_ready, hold=hold)
        assert stalls > 0 or hold == 1, "no pipeline stall was exercised"


@cocotb.test()
async def input_gaps(dut):
    """Points offered irregularly, together with refused results."""
    h = await harness(dut)
    await h.load(h.new_setup())
    await h.run_points(random_points(h.rng, 10), p_valid=0.4)
    await h.run_points(random_points(h.rng, 10), p_valid=0.7, p_ready=0.6)


@cocotb.test()
async def config_refused(dut):
    """Records with a width outside 2..8 or zero entries are refused; the registers keep their values."""
    h = await harness(dut)
    setup = h.new_setup()
    await h.load(setup)
    good = setup.config_records()[-1]
    for bad in ({"bits": 1}, {"bits": 9}, {"bits": 0}, {"entries": 0}):
        assert await h.write_config({**good, **bad}) == 1, f"{bad} was not refused"
    await h.run_points(random_points(h.rng, 6))
    assert await h.write_config(good) == 0, "error not cleared by an accepted record"


@cocotb.test()
async def throughput(dut):
    """Cycles per point for a long batch (for bench/heu.py): the steady state is 8L per point."""
    h = await harness(dut)
    bits = h.p.get("bits")
    await h.load(h.new_setup(bits))
    n = h.p.get("n_points", 32)
    _, cycles, _ = await h.run_points(random_points(h.rng, n))
    if not h.p.get("measure_only"):  # calibration measures without assuming the formula
        assert cycles == cycles_per_batch(n, h.L)
    h.report(cycles=cycles, n_points=n, sim_cycles=h.sim_cycles, sim_seconds=h.sim_seconds,
             words=h.setup.words_used())


@cocotb.test()
async def reset_mid_batch(dut):
    """A reset with points in flight empties the pipeline and clears the configuration registers
    and counters, not the tables: after rewriting the configuration the next batch is exact."""
    h = await harness(dut)
    d = dut
    setup = h.new_setup()
    await h.load(setup)
    point = h.point_layout.const([1000, 2000, 3000]).as_bits()
    for abort_after in (3, 8 * h.L + 2):
        h.points.start(itertools.repeat(point))  # offered in every cycle until the abort
        for _ in range(abort_after):
            await h.tick()
        h.points.abort()
        await ReadOnly()
        assert d.busy.value == 1, "no point in flight before the reset"
        await h.tick()
        d.rst.value = 1
        await h.tick()
        d.rst.value = 0
        await ReadOnly()
        assert d.busy.value == 0 and h.results.valid.value == 0 and d.cycles.value == 0
        await h.tick()
        for rec in setup.config_records():
            assert await h.write_config(rec) == 0
        await h.run_points(random_points(h.rng, 5))


@cocotb.test()
async def replay_quantized_nerf(dut):
    """A real quantized NeRF's tables (hero.quant export, its packed memory image loaded word by word)
    and real sample positions: the RTL equals the NeRF's own integer encoding bit for bit."""
    from hero.quant.export import load_export

    h = await harness(dut)
    model = load_export(h.p["export"])
    setup = HeuSetup.of_export(model)
    assert len(model.table_memory) <= h.depth, "the exported tables do not fit the memory"
    for rec in setup.config_records():
        assert await h.write_config(rec) == 0, f"config record refused: {rec}"
    await h.write_tables(enumerate(model.table_memory.tolist()))
    h.setup = setup
    with np.load(h.p["trace"]) as z:
        pos, want = z["positions"], z["encoding"]
    got, _, _ = await h.run_points(pos)  # checked against hero.intarith inside
    np.testing.assert_array_equal(got, ia.HASH_OUT_FORMAT.encode(want),
                                  err_msg="RTL differs from the NeRF's integer encoding")
