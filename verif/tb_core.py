"""cocotb testbench for rtl.core.Core, run under Verilator by tests/test_core_rtl.py.

A real quantized NeRF (hero.quant export) is loaded through the config port with the core's own
encoder; its samples' raw outputs are checked bit for bit against the NeRF's integer path
(QuantizedNeRF.trace_int), and the cycle counter against sim_py.core.batch_cycles.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from hero.nerf.dataflow import HOST_LAYERS
from hero.quant.export import load_export
from rtl.core import CoreParams, Target, output_layout, requant_layout
from rtl.mlp_engine import layer_tiles
from sim_py.core import stream_cycles
from verif.sim import tb_params
from verif.stream import Driver, Monitor, now_cycles, start_clock


class CoreHarness:
    def __init__(self, dut):
        p = self.p = tb_params()
        self.dut = dut
        self.core = CoreParams(**p["core"])
        self.model = load_export(p["export"])
        self.records = self.core.config_records(self.model)
        with np.load(p["trace"]) as z:
            self.trace = {k: z[k] for k in z.files}
        self.rng = np.random.default_rng(p.get("seed", 1))
        self.configs = Driver(dut, "config")
        self.samples = Driver(dut, "sample", self.rng)
        self.results = Monitor(dut, "result", self.rng)
        self.out_layout = output_layout(self.core.net, self.core.acc_bits)
        self.log = dut._log

    async def start(self):
        start_clock(self.dut)
        self.dut.clear.value = 0
        await self.reset()

    async def tick(self):
        await RisingEdge(self.dut.clk)

    async def reset(self):
        self.dut.rst.value = 1
        await self.tick()
        await self.tick()
        self.dut.rst.value = 0
        await self.tick()

    def target(self, raw: int) -> Target:
        return Target(self.core.config_layout.from_bits(raw).target)

    async def load(self, targets=None):
        """The model's records (those of `targets` only, if given); no record may be refused."""
        recs = [r for r in self.records if targets is None or self.target(r) in targets]
        t0 = now_cycles()
        await self.configs.send(recs)
        self.loaded = {"records": dict(Counter(self.target(r).name.lower() for r in recs)), "cycles": now_cycles() - t0}
        await ReadOnly()
        assert self.dut.error.value == 0, "a config record of the model was refused"
        await self.tick()

    def layer_shapes(self):
        return [(s.k, s.c_out, x.bits) for s, x in zip(self.core.layers, self.model.layers, strict=True)]

    async def run(self, idx: np.ndarray, sizes=None, p_valid=1.0, p_ready=1.0, hold=1, check_cycles=True):
        """Samples `idx` of the trace through the core in batches of `sizes`; checks every output bit
        for bit and (unless not `check_cycles`: a calibration sweep measures) the counters against
        sim_py.core.stream_cycles. Returns (cycles, model)."""
        d, t, core = self.dut, self.trace, self.core
        beats = core.sample_beats(t["positions"][idx], t["sh"][idx], sizes)
        sizes = sizes or [min(core.rows, len(idx) - i) for i in range(0, len(idx), core.rows)]
        d.clear.value = 1
        await self.tick()
        d.clear.value = 0
        t0, c0 = time.perf_counter(), now_cycles()
        self.samples.start(beats, p_valid)
        raw = await self.results.receive(len(idx), p_ready, hold)
        seconds, sim_cycles = time.perf_counter() - t0, now_cycles() - c0
        out = [self.out_layout.from_bits(v) for v in raw]
        density = np.array([int(o.density) for o in out])
        color = np.array([[int(c) for c in o.color] for o in out])
        density_layer, color_layer = HOST_LAYERS
        np.testing.assert_array_equal(density, t[f"acc.{density_layer}"][idx, 0],
                                      err_msg=f"{density_layer} output 0 differs from the integer path")
        np.testing.assert_array_equal(color, t[f"acc.{color_layer}"][idx],
                                      err_msg=f"{color_layer} differs from the integer path")
        await ReadOnly()
        cycles, stalls, sent = int(d.cycles.value), int(d.stall_cycles.value), int(d.samples.value)
        assert d.busy.value == 0 and d.error.value == 0
        assert sent == len(idx), f"samples counter {sent}, sent {len(idx)}"
        model = stream_cycles(sizes, core.levels, self.layer_shapes(), core.rows, core.cols)
        assert p_ready < 1 or stalls == 0, f"{stalls} stall cycles with every result taken"
        # A refused result delays the rest by at most a cycle (less where the next batch is not ready).
        assert not check_cycles or cycles >= model, f"{cycles} cycles < model {model}"
        if check_cycles and p_valid >= 1:
            assert cycles <= model + stalls, f"{cycles} cycles > model {model} + {stalls} stalls"
        self.outputs = density, color
        self.speed = sim_cycles / seconds  # simulated cycles per second of wall time
        self.log.info(f"{len(idx)} samples in {sizes}: {cycles} cycles (model {model}, {stalls} stalls), "
                      f"{sim_cycles / seconds:.0f} simulated cycles/s")
        await self.tick()
        return cycles, model


async def harness(dut) -> CoreHarness:
    h = CoreHarness(dut)
    await h.start()
    await h.load()
    return h


def every_index(h: CoreHarness) -> np.ndarray:
    return np.arange(len(h.trace["positions"]))


def mixed_sizes(n: int, rows: int) -> list[int]:
    """Batches of R and of 3 samples in turn (partial batches between full ones)."""
    sizes = []
    while sum(sizes) < n:
        sizes.append(min(rows if len(sizes) % 2 == 0 else min(3, rows), n - sum(sizes)))
    return sizes


@cocotb.test()
async def quantized_nerf_samples(dut):
    """Every sample of the trace, in full and partial batches, exact and in the model's cycles."""
    h = await harness(dut)
    idx = every_index(h)
    await h.run(idx, mixed_sizes(len(idx), h.core.rows))
    await h.run(idx[:1])


@cocotb.test()
async def backpressure_and_gaps(dut):
    """Refused results (short and long) and gaps between samples: still exact."""
    h = await harness(dut)
    idx = every_index(h)[: 2 * h.core.rows + 1]
    await h.run(idx, p_ready=0.4, hold=6)
    await h.run(idx[::-1], p_valid=0.3)
    await h.run(idx, p_valid=0.6, p_ready=0.5, hold=3)


@cocotb.test()
async def refused_config(dut):
    """A layer record with a weight width outside 2..max_wbits is refused and changes nothing; a
    column without a requant multiplier makes the engine refuse the tile: the batch is dropped."""
    h = await harness(dut)
    d, core = dut, h.core
    idx = every_index(h)[: core.rows]
    first = layer_tiles(h.model.layers[0], core.cols)[0]  # layer 0's registers; its weights start at word 0
    for wbits, out_bits in ((1, first.rq.out_bits), (core.max_wbits + 1, first.rq.out_bits), (first.wbits, 1)):
        bad = core.layer_record(first, 0, wbits=wbits, out_bits=out_bits)
        await h.configs.send([core.record(Target.LAYER, 0, bad)])
        await ReadOnly()
        assert d.error.value == 1, f"layer record wbits={wbits} out_bits={out_bits} was not refused"
        await h.tick()
    await h.configs.send([core.record(Target.LAYER, len(core.layers), core.layer_record(first, 0))])
    await ReadOnly()
    assert d.error.value == 1, "a record for a layer that does not exist was not refused"
    await h.tick()
    await h.load([Target.LAYER])  # accepted: error clears
    await h.run(idx)
    # A zero multiplier in the last fold's last column: the engine refuses color.fc2's tile.
    zero = requant_layout().const({"mult": 0, "shift": 0}).as_bits()
    await h.configs.send([core.record(Target.REQUANT, core.requant_addr(core.fold_base[-1] - 1, core.cols - 1), zero)])
    h.samples.start(core.sample_beats(h.trace["positions"][idx], h.trace["sh"][idx]))
    # The batch is dropped: no result leaves before the core is idle with `error` high.
    await h.results.expect_none(until=lambda: d.error.value == 1 and d.busy.value == 0, cycles=20000)
    await h.load([Target.REQUANT])
    await h.run(idx)


@cocotb.test()
async def reset_mid_batch(dut):
    """A reset while the first batch is encoded, and while the engine runs it with the second batch
    being encoded: after reloading only the registers (level and layer records; tables, weights and
    requant memories survive) the next batches are exact."""
    h = await harness(dut)
    d, core = dut, h.core
    idx = every_index(h)[: core.rows]
    two = every_index(h)[: 2 * core.rows]
    for wait in (30, 8 * core.levels * core.rows + 200):
        beats = core.sample_beats(h.trace["positions"][two], h.trace["sh"][two])
        h.samples.start(beats)
        for _ in range(wait):
            await h.tick()
        await ReadOnly()
        assert d.busy.value == 1, "no batch in progress before the reset"
        await h.tick()
        h.samples.abort()
        await h.reset()
        await ReadOnly()
        assert d.busy.value == 0 and h.results.valid.value == 0 and d.cycles.value == 0
        await h.tick()
        await h.load([Target.HEU_LEVEL, Target.LAYER])
        await h.run(idx)


@cocotb.test()
async def cycle_sweep(dut):
    """For `make calibrate` and bench.cycle_model: the model's load through the config port (its
    records per target, and the cycles from the first record offered to the last taken), and each
    stream of batch sizes in `streams` (trace samples reused in turn), outputs exact, its measured
    cycles; written to the file `out`."""
    h = await harness(dut)
    n_trace, rows = len(h.trace["positions"]), []
    for sizes in h.p["streams"]:
        idx = np.arange(sum(sizes)) % n_trace
        cycles, _ = await h.run(idx, list(sizes), check_cycles=False)
        rows.append({"sizes": list(sizes), "cycles": cycles, "cycles_per_s": h.speed})
    with open(h.p["out"], "w") as f:
        json.dump({"config": h.loaded, "streams": rows}, f)


@cocotb.test()
async def all_samples(dut):
    """Every sample of the trace in batches of R, exact; the raw outputs go to the file `out`."""
    h = await harness(dut)
    await h.run(every_index(h))
    density, color = h.outputs
    np.savez(h.p["out"], density=density, color=color)
