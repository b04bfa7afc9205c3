"""cocotb driver and monitor for `amaranth.lib.stream` interfaces (ports `<name>__valid/ready/payload`).

Both work one cycle at a time on the rising edge: they write in the cycle's write phase, see the
handshake in its read-only phase, and return in the cycle after their last handshake. Without
random gaps or refusals they sleep until the other side's signal rises (the DUT is synchronous, so
it rises just after a clock edge), which leaves long waits to the simulator. A bench reads and
writes a stream's ports only through them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

CLOCK_NS = 10


def start_clock(dut) -> None:
    """A free-running clock on dut.clk, one cycle per CLOCK_NS."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, units="ns").start())


def now_cycles() -> int:
    """Rising edges of start_clock's clock so far."""
    return int(get_sim_time("ns")) // CLOCK_NS


def _ports(dut, name: str):
    return getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"), getattr(dut, f"{name}__payload")


class Driver:
    """The source side of a stream: sends raw payloads in order, each offered in a cycle with
    probability `p_valid` (a gap otherwise) and held until taken."""

    def __init__(self, dut, name: str, rng: np.random.Generator | None = None, p_valid: float = 1.0):
        self.name, self.clk = name, dut.clk
        self.valid, self.ready, self.payload = _ports(dut, name)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.p_valid = p_valid
        self.task = None  # start()'s background send
        self.valid.value = 0

    def start(self, beats: Iterable[int], p_valid: float | None = None):
        """send() in the background; returns its task."""
        self.task = cocotb.start_soon(self.send(beats, p_valid))
        return self.task

    def abort(self) -> None:
        """Stop offering in this cycle (`valid` low): start()'s send ends, its beats not taken are dropped."""
        if self.task is not None:
            self.task.kill()
            self.task = None
        self.valid.value = 0

    async def send(self, beats: Iterable[int], p_valid: float | None = None) -> None:
        p = self.p_valid if p_valid is None else p_valid
        for beat in beats:
            taken = False
            while not taken:
                offer = p >= 1 or self.rng.random() < p
                self.valid.value = int(offer)
                if offer:
                    self.payload.value = int(beat)
                await ReadOnly()
                if offer and self.ready.value == 0 and p >= 1:
                    await RisingEdge(self.ready)  # held until taken: sleep until ready rises
                    await ReadOnly()
                taken = offer and self.ready.value == 1
                await RisingEdge(self.clk)
        self.valid.value = 0


class Monitor:
    """The sink side of a stream: collects raw payloads, raising `ready` in a cycle with probability
    `p_ready`; a refusal lasts 1 to `hold` cycles. Checks that a refused payload is held."""

    def __init__(self, dut, name: str, rng: np.random.Generator | None = None, p_ready: float = 1.0,
                 hold: int = 1):
        self.name, self.clk = name, dut.clk
        self.valid, self.ready, self.payload = _ports(dut, name)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.p_ready, self.hold = p_ready, hold
        self.ready.value = 0

    async def receive(self, n: int, p_ready: float | None = None, hold: int | None = None) -> list[int]:
        p = self.p_ready if p_ready is None else p_ready
        hold = self.hold if hold is None else hold
        out, held, low_left = [], None, 0
        while len(out) < n:
            if low_left:
                low_left -= 1
                ready = False
            else:
                ready = p >= 1 or self.rng.random() < p
                if not ready:
                    low_left = int(self.rng.integers(0, hold))
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and p >= 1 and self.valid.value == 0:
                await RisingEdge(self.valid)  # always ready: sleep until valid rises
                await ReadOnly()
            if self.valid.value:
                payload = self.payload.value.integer
                assert held is None or payload == held, f"{self.name}: payload changed while waiting for ready"
                if ready:
                    out.append(payload)
                    held = None
                else:
                    held = payload
            await RisingEdge(self.clk)
        self.ready.value = 0
        return out

    async def expect_none(self, until: Callable[[], bool], cycles: int) -> None:
        """Ready, and no beat may come: asserts `valid` low in each cycle's read phase until `until()`
        holds there (then returns in the next cycle); AssertionError if it has not within `cycles`."""
        self.ready.value = 1
        for _ in range(cycles):
            await ReadOnly()
            assert self.valid.value == 0, f"{self.name}: a beat was offered"
            if until():
                await RisingEdge(self.clk)
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"{self.name}: the condition did not hold within {cycles} cycles")
