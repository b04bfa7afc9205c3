"""cocotb testbench for rtl.mlp_engine.MLPEngine, run under Verilator by tests/test_mlp_engine_rtl.py.

Every tile is checked bit for bit against verif.mlp_engine_ref (hero.intarith), and its cycle
count against sim_py.mlp_engine.cycles_per_tile.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from hero import intarith as ia
from rtl.mlp_engine import TileConfig, layer_tiles, operand_layout, requant_port_layouts, result_layout
from sim_py.mlp_engine import cycles_per_tile
from verif.mlp_engine_ref import Tile, q_lanes, random_tile
from verif.sim import tb_params
from verif.stream import Driver, Monitor, now_cycles, start_clock


class EngineHarness:
    """Drives the engine's ports cycle by cycle and collects what it returns."""

    def __init__(self, dut, seed: int):
        p = tb_params()
        self.dut = dut
        self.rows, self.cols, self.max_wbits = p["rows"], p["cols"], p["max_wbits"]
        self.operand_layout = operand_layout(self.rows, self.cols, ia.ACT_BITS)
        self.result_layout = result_layout(self.rows, self.cols, ia.ACT_BITS, p["acc_bits"])
        self.rng = np.random.default_rng(seed)
        self.operands = Driver(dut, "operand", self.rng)
        self.results = Monitor(dut, "result", self.rng)
        self.pending = None  # (tile, stalled) whose done and cycle count are not yet checked
        self.log = dut._log

    async def start(self):
        start_clock(self.dut)
        for name in ("start", "rst"):
            getattr(self.dut, name).value = 0
        await self.reset()

    @property
    def edges(self) -> int:
        return now_cycles()

    async def tick(self):
        await RisingEdge(self.dut.clk)

    async def reset(self, cycles: int = 2):
        self.dut.rst.value = 1
        for _ in range(cycles):
            await self.tick()
        self.dut.rst.value = 0
        await self.tick()

    def configure(self, cfg: TileConfig, **ports):
        """Set the configuration ports to `cfg`'s values, those named in `ports` to theirs."""
        for name, value in {**cfg.port_values(), **ports}.items():
            getattr(self.dut, name).value = value

    def tile(self, k: int, wbits: int, **kw) -> Tile:
        return random_tile(self.rng, self.rows, self.cols, k, wbits, **kw)

    async def run_tile(self, tile: Tile, p_valid: float = 1.0, p_ready: float = 1.0,
                       abort_after_beats: int | None = None):
        """Start `tile`, feed it, drain it. Returns the rows, or None when aborted for a reset.

        The call starts in a cycle where the engine is idle and returns in the cycle after the
        last row's handshake, where `done` must be high, so consecutive calls run back to back.
        """
        d = self.dut
        self.configure(tile.cfg)
        d.start.value = 1
        await ReadOnly()
        await self.check_done()
        assert d.busy.value == 0, "engine busy when a tile was started"
        await self.tick()
        d.start.value = 0
        beats = [self.operand_layout.const({"x": x, "w": w}).as_bits() for x, w in tile.beats()]
        if abort_after_beats is not None:
            await self.operands.send(beats[:abort_after_beats], p_valid)
            return None
        feed = self.operands.start(beats, p_valid)
        watch = cocotb.start_soon(self.done_stays_low())
        rows = [self.result_layout.from_bits(v) for v in await self.results.receive(self.rows, p_ready)]
        watch.kill()
        assert feed.done(), "rows drained before every operand was taken"
        self.check(tile, rows)
        self.pending = (tile, p_valid < 1 or p_ready < 1)  # checked in this cycle's read phase
        return rows

    async def done_stays_low(self):
        while True:
            await ReadOnly()
            assert self.dut.done.value == 0, "done while the tile was still running"
            await RisingEdge(self.dut.clk)

    async def check_done(self):
        """In the read phase of the cycle after a tile: `done` pulses and the engine is idle."""
        if self.pending is None:
            return
        tile, stalled = self.pending
        self.pending = None
        d = self.dut
        assert d.done.value == 1, "done did not pulse after the last row"
        assert d.busy.value == 0, "engine still busy after done"
        if tb_params().get("measure_only"):  # calibration: measure, do not assume the formula
            return
        expected = cycles_per_tile(tile.k, tile.cfg.wbits, self.rows, self.cols)
        cycles, stalls = int(d.cycles.value), int(d.stall_cycles.value)
        assert stalled or stalls == 0, f"{stalls} stall cycles with no stall offered"
        assert cycles == expected + stalls, (f"K={tile.k} wbits={tile.cfg.wbits}: {cycles} cycles, "
                                             f"formula {expected} + {stalls} stalls")

    async def finish(self):
        await ReadOnly()
        await self.check_done()
        await self.tick()

    def check(self, tile: Tile, rows):
        assert [int(r.row) for r in rows] == list(range(self.rows)), "rows drained out of order"
        acc = np.array([[int(r.acc[c]) for c in range(self.cols)] for r in rows])
        q = np.array([[int(r.q[c]) for c in range(self.cols)] for r in rows])
        np.testing.assert_array_equal(acc, tile.expected_acc(), err_msg=f"acc mismatch (K={tile.k}, "
                                      f"wbits={tile.cfg.wbits}, signed={tile.cfg.act_signed})")
        np.testing.assert_array_equal(q, tile.expected_q(), err_msg=f"requantized mismatch ({tile.cfg.rq})")


async def harness(dut) -> EngineHarness:
    h = EngineHarness(dut, seed=tb_params().get("seed", 1))
    await h.start()
    return h


@cocotb.test()
async def random_tiles_every_wbits(dut):
    """Random tiles at every weight width, unsigned and signed activations."""
    h = await harness(dut)
    for wbits in range(ia.MIN_WBITS, h.max_wbits + 1):
        for act_signed in (False, True):
            await h.run_tile(h.tile(int(h.rng.integers(1, 40)), wbits, act_signed=act_signed))
    await h.finish()


@cocotb.test()
async def k_sweep(dut):
    """Reduction lengths from 1 to several hundred."""
    h = await harness(dut)
    for k in (1, 2, 3, 5, 8, 17, 64, 127, 128, 255, 300, 513):
        wbits = int(h.rng.integers(ia.MIN_WBITS, h.max_wbits + 1))
        await h.run_tile(h.tile(k, wbits, act_signed=bool(k % 2)))
    await h.finish()


@cocotb.test()
async def extreme_values(dut):
    """Most negative weights, largest activations, and a long K at the worst-case sum."""
    h = await harness(dut)
    wmax = h.max_wbits
    for act_signed in (False, True):
        for wbits in (ia.MIN_WBITS, wmax):
            await h.run_tile(h.tile(33, wbits, act_signed=act_signed, extremes=True))
    # Every product at its largest magnitude, K long: the accumulator's worst case.
    k = 2048
    act = ia.act_format(ia.ACT_BITS, signed=False)
    wf = ia.weight_format(wmax)
    x = np.full((h.rows, k), act.max)
    w = np.full((k, h.cols), wf.min)
    tile = Tile(x, TileConfig(w, wmax, False, ia.Requant(1, 0, relu=False, out_bits=ia.ACT_BITS)))
    rows = await h.run_tile(tile)
    assert int(rows[0].acc[0]) == k * act.max * wf.min
    await h.finish()


@cocotb.test()
async def back_to_back(dut):
    """Tiles started in the cycle `done` pulses: no gap, period = cycles_per_tile."""
    h = await harness(dut)
    for i in range(6):
        tile = h.tile(int(h.rng.integers(1, 20)), int(h.rng.integers(2, h.max_wbits + 1)),
                      act_signed=bool(i % 2))
        before = h.edges
        await h.run_tile(tile)
        period = h.edges - before
        assert period == cycles_per_tile(tile.k, tile.cfg.wbits, h.rows, h.cols), f"tile period {period}"
    await h.finish()


@cocotb.test()
async def stalls(dut):
    """Missing operands and refused results: exact results, cycles = formula + stall_cycles."""
    h = await harness(dut)
    for p_valid, p_ready in ((0.5, 1.0), (1.0, 0.3), (0.6, 0.5)):
        for _ in range(3):
            tile = h.tile(int(h.rng.integers(1, 24)), int(h.rng.integers(2, h.max_wbits + 1)))
            await h.run_tile(tile, p_valid=p_valid, p_ready=p_ready)
    await h.finish()


@cocotb.test()
async def reset_mid_operation(dut):
    """A reset while feeding returns the engine to idle; the next tile is exact."""
    h = await harness(dut)
    d = dut
    for abort in (1, 7):
        tile = h.tile(6, min(5, h.max_wbits))
        assert await h.run_tile(tile, abort_after_beats=abort) is None
        await ReadOnly()
        assert d.busy.value == 1
        await h.tick()
        await h.reset(cycles=1)
        await ReadOnly()
        assert d.busy.value == 0 and d.cycles.value == 0 and h.results.valid.value == 0
        assert h.operands.ready.value == 0
        await h.tick()
        await h.run_tile(h.tile(9, min(3, h.max_wbits), act_signed=True))
        await h.finish()


@cocotb.test()
async def invalid_config_refused(dut):
    """k = 0, a weight width outside 2..max_wbits, or a zero multiplier in the last column is
    refused and flagged on `error`."""
    h = await harness(dut)
    d = dut
    good = h.tile(4, min(4, h.max_wbits))
    mult, _ = good.cfg.rq_columns()
    no_last_mult = requant_port_layouts(h.cols)["rq_mult"].const([*mult[:-1], 0]).as_bits()
    for bad in ({"k": 0}, {"wbits": 1}, {"wbits": h.max_wbits + 1} if h.max_wbits < 15 else {"wbits": 0},
                {"rq_mult": no_last_mult}):
        h.configure(good.cfg, **bad)
        d.start.value = 1
        await h.tick()
        d.start.value = 0
        await ReadOnly()
        assert d.error.value == 1 and d.busy.value == 0, f"{bad} was not refused"
        await h.tick()
    await h.run_tile(good)
    await ReadOnly()
    assert d.error.value == 0, "error not cleared by an accepted start"
    await h.check_done()


@cocotb.test()
async def cycle_sweep(dut):
    """bench.mlp_engine: measured cycles per tile over (K, wbits), and simulation speed."""
    import json
    import time

    h = await harness(dut)
    p = tb_params()
    rows = []
    for k in p["ks"]:
        for wbits in range(ia.MIN_WBITS, h.max_wbits + 1):
            tile = h.tile(k, wbits)
            before, t0 = h.edges, time.perf_counter()
            await h.run_tile(tile)
            rows.append({"k": k, "wbits": wbits, "period": h.edges - before,
                         "seconds": time.perf_counter() - t0})
            await ReadOnly()
            rows[-1]["cycles"] = int(dut.cycles.value)
            await h.check_done()
            await h.tick()
    with open(p["out"], "w") as f:
        json.dump(rows, f)


@cocotb.test()
async def replay_quantized_nerf(dut):
    """A real quantized NeRF's layers (hero.quant export) on the engine: every tile of the given
    samples, bit for bit against both the reference model and the NeRF's own integer path: the
    accumulators, and the per-channel requantized outputs against the next layer's inputs."""
    from hero.nerf.dataflow import consumer
    from hero.quant.export import load_export

    h = await harness(dut)
    p = tb_params()
    model = load_export(p["export"])
    with np.load(p["trace"]) as z:
        trace = {k: z[k] for k in z.files}
    tiles = 0
    for layer in model.layers:
        x_all, acc_all = trace[f"in.{layer.name}"], trace[f"acc.{layer.name}"]
        folds = layer_tiles(layer, h.cols)
        for r0 in range(0, x_all.shape[0] - h.rows + 1, h.rows):
            for cfg in folds:
                outs = cfg.outputs
                rows = await h.run_tile(Tile(x_all[r0:r0 + h.rows], cfg))
                acc = np.array([[int(r.acc[c]) for c in range(len(outs))] for r in rows])
                np.testing.assert_array_equal(acc, acc_all[r0:r0 + h.rows, outs.start:outs.stop],
                                              err_msg=f"{layer.name}: RTL differs from the NeRF's integer path")
                if consumer(layer.name) is not None:  # the next layer's input holds the requantized outputs
                    name, shift = consumer(layer.name)
                    lo = max(outs.start, -shift)  # density.fc1's output 0 is not requantized
                    want = trace[f"in.{name}"][r0:r0 + h.rows, lo + shift:outs.stop + shift]
                    q = np.array([[int(r.q[c - outs.start]) for c in range(lo, outs.stop)] for r in rows])
                    np.testing.assert_array_equal(q, q_lanes(want, cfg.rq.relu),
                                                  err_msg=f"{layer.name}: RTL requantization differs")
                tiles += 1
    await h.finish()
    assert tiles > 0
    h.log.info(f"{tiles} tiles of {len(model.layers)} layers matched")
