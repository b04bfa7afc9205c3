"""MLPEngine: the bit-serial PE array with its control, operand/result streams and requantizers;
and TileConfig, the configuration of one tile (layer_tiles: a quantized layer's column folds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hero import intarith as ia
from hero.intarith import ACC_BITS, ACT_BITS, MAX_WBITS, MIN_WBITS, REQ_MULT_BITS, REQ_SHIFT_BITS
from sim_py.core import column_folds
from sim_py.mlp_engine import DRAIN_STAGES

from .bitserial_pe import check_pe_params
from .params import COLS, ROWS, at_most, rejecting
from .pe_array import PEArray, check_array_params
from .requantizer import Requantizer

if TYPE_CHECKING:
    from hero.quant.export import QLayer

K_BITS = 16  # width of the `k` port: tiles reduce over 1 .. 65535 terms
COUNTER_BITS = 32


def operand_layout(rows: int, cols: int, act_bits: int) -> data.StructLayout:
    """One beat: the activation column X[:, k] (raw act_bits lanes) and bit plane j of W[k, :]."""
    return data.StructLayout({"x": data.ArrayLayout(act_bits, rows), "w": cols})


def result_layout(rows: int, cols: int, act_bits: int, acc_bits: int) -> data.StructLayout:
    """One drained row: its index, the raw accumulators and their requantized activations."""
    return data.StructLayout({
        "row": max(1, (rows - 1).bit_length()),
        "acc": data.ArrayLayout(signed(acc_bits), cols),
        "q": data.ArrayLayout(act_bits, cols),
    })


def requant_port_layouts(cols: int) -> dict[str, data.ArrayLayout]:
    """The per-column requantization ports: element c is column c's multiplier or shift."""
    return {"rq_mult": data.ArrayLayout(unsigned(REQ_MULT_BITS), cols),
            "rq_shift": data.ArrayLayout(unsigned(REQ_SHIFT_BITS), cols)}


def weight_plane_words(w, wbits: int) -> np.ndarray:
    """The `w` fields of a tile's beats: (K, wbits) ints, bit j (MSB first) of W[k, :] packed with
    column c at bit c."""
    planes = ia.weight_bitplanes(np.asarray(w, dtype=np.int64), wbits)  # (wbits, K, C)
    col_weights = 1 << np.arange(planes.shape[-1], dtype=np.int64)
    return (planes * col_weights).sum(axis=-1).T


def tile_requant(rq: ia.Requant | None, c_out: int, c0: int, cols: int) -> ia.Requant:
    """The per-column requantization of the tile of a layer's outputs c0 .. c0+cols-1 on an array of
    `cols` columns. A layer's requant covers its last rq.channels outputs (density.fc1's output 0
    leaves raw for the host); outputs without one, and padding columns, get (1, 0)."""
    if rq is None:
        return ia.Requant(tuple([1] * cols), tuple([0] * cols), relu=False, out_bits=ia.ACT_BITS)
    first = c_out - rq.channels
    idx = [c - first if first <= c < c_out else None for c in range(c0, c0 + cols)]
    return ia.Requant(tuple(1 if i is None else rq.mult[i] for i in idx),
                      tuple(0 if i is None else rq.shift[i] for i in idx), rq.relu, rq.out_bits)


@dataclass(frozen=True)
class TileConfig:
    """What the engine takes for one tile besides the activations: the weights W (K, C), their
    width, the inputs' signedness and the requantization (per column, or one for every column).
    `outputs`: for a layer's fold, the layer's output channels held by columns 0.. (the rest pad)."""

    w: np.ndarray
    wbits: int
    act_signed: bool
    rq: ia.Requant
    outputs: range | None = None

    @property
    def k(self) -> int:
        return self.w.shape[0]

    @property
    def cols(self) -> int:
        return self.w.shape[1]

    def plane_words(self) -> np.ndarray:
        """The operand beats' `w` fields, (K, wbits) (weight_plane_words)."""
        return weight_plane_words(self.w, self.wbits)

    def rq_columns(self) -> tuple[list[int], list[int]]:
        """Each column's requant multiplier and shift."""
        per_col = [[int(v)] * self.cols if self.rq.channels is None else [int(x) for x in v]
                   for v in (self.rq.mult, self.rq.shift)]
        return per_col[0], per_col[1]

    def port_values(self) -> dict[str, int]:
        """The configuration ports' raw values (every port `start` latches)."""
        mult, shift = self.rq_columns()
        lay = requant_port_layouts(self.cols)
        return {"k": self.k, "wbits": self.wbits, "act_signed": int(self.act_signed),
                "rq_mult": lay["rq_mult"].const(mult).as_bits(), "rq_shift": lay["rq_shift"].const(shift).as_bits(),
                "rq_relu": int(self.rq.relu), "rq_out_bits": self.rq.out_bits}


def layer_tiles(layer: QLayer, cols: int) -> list[TileConfig]:
    """A quantized layer on an array of `cols` columns: one tile per column fold, fold f holding
    outputs f*cols.., its weights padded with zero columns, its requantization tile_requant's."""
    w_all = layer.w_int.numpy()
    k, c_out = w_all.shape
    tiles = []
    for f in range(column_folds(c_out, cols)):
        outputs = range(f * cols, min((f + 1) * cols, c_out))
        w = np.zeros((k, cols), dtype=np.int64)
        w[:, :len(outputs)] = w_all[:, outputs.start:outputs.stop]
        tiles.append(TileConfig(w, layer.bits, layer.in_fmt.signed,
                                tile_requant(layer.rq, c_out, outputs.start, cols), outputs))
    return tiles


class MLPEngine(wiring.Component):
    """Computes one output tile Y[R x C] = X[R x K] . W[K x C] per start, weights bit-serial.

    Protocol (docs/mlp_engine.md):
    - In IDLE, `start` latches the configuration ports (k, wbits, act_signed, rq_*; rq_mult and
      rq_shift hold one entry per column, for per-channel weight scales). An invalid configuration
      (k = 0, wbits outside 2..max_wbits, rq_out_bits outside 2..act_bits or any column's
      rq_mult = 0) is refused and raises `error` until the next accepted start.
    - FEED takes k * wbits beats from `operand`: for k in 0..K-1, for bit j from the MSB down,
      {x: X[:, k], w: bit j of W[k, :]}. A missing beat stalls the whole array.
    - FLUSH runs the array R + C - 1 more cycles: R + C - 2 until the last beat has left the skew,
      one more for its product to reach the accumulator (the PE's product register).
    - DRAIN moves R rows, one a cycle, into the drain pipeline (the selected row's register, then
      the requantizers' three: DRAIN_STAGES in all), EMPTY waits for the last; `result` gives the
      rows in order, honouring back-pressure (the pipeline holds); `done` pulses in the cycle after
      the last row's handshake.
    `cycles` counts the tile's cycles from the accepted start to the last row sent;
    `stall_cycles` counts those lost to a missing operand or a refused result.
    Without stalls cycles = k * wbits + 2R + C + DRAIN_STAGES (sim_py.mlp_engine.cycles_per_tile).
    """

    def __init__(self, *, rows: int = ROWS, cols: int = COLS, max_wbits: int = MAX_WBITS,
                 act_bits: int = ACT_BITS, acc_bits: int = ACC_BITS):
        with rejecting(self):
            check_array_params(rows, cols)
            check_pe_params(act_bits, max_wbits, acc_bits)
        self.rows, self.cols = rows, cols
        self.max_wbits, self.act_bits, self.acc_bits = max_wbits, act_bits, acc_bits
        super().__init__({
            "start": In(1),
            "k": In(unsigned(K_BITS)),
            "wbits": In(range(max_wbits + 1)),
            "act_signed": In(1),
            **{name: In(layout) for name, layout in requant_port_layouts(cols).items()},
            "rq_relu": In(1),
            "rq_out_bits": In(range(act_bits + 1)),
            "operand": In(stream.Signature(operand_layout(rows, cols, act_bits))),
            "result": Out(stream.Signature(result_layout(rows, cols, act_bits, acc_bits))),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "cycles": Out(COUNTER_BITS),
            "stall_cycles": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        m.submodules.array = array = PEArray(rows=rows, cols=cols, act_bits=self.act_bits,
                                             max_wbits=self.max_wbits, acc_bits=self.acc_bits)

        # Configuration latched at start.
        act_signed = Signal()
        rq_mult = Signal.like(self.rq_mult)
        rq_shift = Signal.like(self.rq_shift)
        rq_relu = Signal()
        rq_out_bits = Signal.like(self.rq_out_bits)

        k_idx = Signal.like(self.k)
        bit_idx = Signal.like(self.wbits)
        # k - 1 and wbits - 1 latched at start (k and wbits themselves are not needed): FEED compares
        # the counters with them by equality, with no subtraction's carry chain before the state register.
        k_last = Signal.like(self.k)
        bit_last = Signal.like(self.wbits)
        flush = array.skew + 1  # the skew, then the PE's product register
        flush_left = Signal(range(flush + 1))
        row = Signal.like(self.result.payload.row)

        mult_ok = 1
        for c in range(cols):
            mult_ok &= self.rq_mult[c] != 0
        config_ok = ((self.k != 0) & (self.wbits >= MIN_WBITS) & at_most(self.wbits, self.max_wbits)
                     & (self.rq_out_bits >= 2) & (self.rq_out_bits <= self.act_bits) & mult_ok)

        # Operand path: extend each activation lane by the tile's signedness.
        for r in range(rows):
            lane = self.operand.payload.x[r]
            m.d.comb += array.x[r].eq(Mux(act_signed, lane.as_signed(), lane.as_unsigned()))
        m.d.comb += array.w.eq(self.operand.payload.w)

        # Result path: the drain pipeline. Stage 0 registers the selected row's accumulators, then
        # the requantizers' REQUANT_STAGES registers; the result is the last stage. Every stage
        # advances when the last one is empty or taken.
        stages = DRAIN_STAGES
        p_valid = [Signal(name=f"drain_valid_{i}") for i in range(stages)]
        p_row = [Signal.like(row, name=f"drain_row_{i}") for i in range(stages)]
        p_acc = [Signal(data.ArrayLayout(signed(self.acc_bits), cols), name=f"drain_acc_{i}") for i in range(stages)]
        advance = ~p_valid[-1] | self.result.ready
        issuing = Signal()  # DRAIN: row `row` enters stage 0
        with m.If(advance):
            m.d.sync += [p_valid[0].eq(issuing), p_row[0].eq(row), p_acc[0].eq(array.acc[row])]
            for i in range(1, stages):
                m.d.sync += [p_valid[i].eq(p_valid[i - 1]), p_row[i].eq(p_row[i - 1]), p_acc[i].eq(p_acc[i - 1])]
        for c in range(cols):
            rq = Requantizer(acc_bits=self.acc_bits, act_bits=self.act_bits, pipelined=True)
            m.submodules[f"requant_{c}"] = rq
            m.d.comb += [
                rq.en.eq(advance),
                rq.acc.eq(p_acc[0][c]),
                rq.mult.eq(rq_mult[c]),
                rq.shift.eq(rq_shift[c]),
                rq.relu.eq(rq_relu),
                rq.out_bits.eq(rq_out_bits),
                self.result.payload.acc[c].eq(p_acc[-1][c]),
                self.result.payload.q[c].eq(rq.q),
            ]
        m.d.comb += [self.result.payload.row.eq(p_row[-1]), self.result.valid.eq(p_valid[-1])]
        last_taken = p_valid[-1] & self.result.ready & (p_row[-1] == rows - 1)

        m.d.sync += self.done.eq(0)
        with m.FSM(name="ctrl") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    with m.If(config_ok):
                        m.d.sync += [
                            k_last.eq(self.k - 1), bit_last.eq(self.wbits - 1), act_signed.eq(self.act_signed),
                            rq_mult.eq(self.rq_mult), rq_shift.eq(self.rq_shift),
                            rq_relu.eq(self.rq_relu), rq_out_bits.eq(self.rq_out_bits),
                            k_idx.eq(0), bit_idx.eq(0), row.eq(0),
                            self.cycles.eq(1), self.stall_cycles.eq(0), self.error.eq(0),
                        ]
                        m.next = "FEED"
                    with m.Else():
                        m.d.sync += self.error.eq(1)

            with m.State("FEED"):
                last_bit = bit_idx == bit_last
                m.d.comb += [
                    self.operand.ready.eq(1),
                    array.en.eq(self.operand.valid),
                    array.flags.valid.eq(self.operand.valid),
                    array.flags.first.eq(bit_idx == 0),
                    array.flags.last.eq(last_bit),
                    array.flags.clear.eq(k_idx == 0),
                ]
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(~self.operand.valid):
                    m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
                with m.Elif(~last_bit):
                    m.d.sync += bit_idx.eq(bit_idx + 1)
                with m.Else():
                    m.d.sync += [bit_idx.eq(0), k_idx.eq(k_idx + 1), flush_left.eq(flush)]
                    with m.If(k_idx == k_last):
                        m.next = "FLUSH"

            with m.State("FLUSH"):
                m.d.comb += array.en.eq(1)
                m.d.sync += [self.cycles.eq(self.cycles + 1), flush_left.eq(flush_left - 1)]
                with m.If(flush_left == 1):
                    m.next = "DRAIN"

            with m.State("DRAIN"):
                m.d.comb += issuing.eq(1)
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(~advance):
                    m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
                with m.Elif(row == rows - 1):
                    m.d.sync += row.eq(0)
                    m.next = "EMPTY"
                with m.Else():
                    m.d.sync += row.eq(row + 1)

            with m.State("EMPTY"):  # the last rows through the drain pipeline
                m.d.sync += self.cycles.eq(self.cycles + 1)
                with m.If(~advance):
                    m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
                with m.If(last_taken):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
