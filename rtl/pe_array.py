"""PEArray: an R x C output-stationary systolic grid of BitSerialPEs."""

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hero.intarith import ACC_BITS, ACT_BITS, MAX_WBITS

from .bitserial_pe import BitSerialPE, check_pe_params
from .params import check_int, rejecting

#: Control flags that travel with each weight bit.
BEAT_FLAGS = data.StructLayout({"valid": 1, "first": 1, "last": 1, "clear": 1})


def check_array_params(rows: int, cols: int) -> None:
    check_int("rows", rows, 1, 64)
    check_int("cols", cols, 1, 64)


class PEArray(wiring.Component):
    """Y[R x C] accumulates X[R x K] . W[K x C], one weight bit-plane per enabled cycle.

    Each enabled cycle takes one beat: `x[r]` = X[r, k] (extended activations, held for the
    wbits beats of that k) and `w[c]` = bit j of W[k, c], with `flags` saying where the beat falls.
    Row r's activations enter delayed by r cycles and column c's weight bits by c cycles, so
    PE(r, c) sees the beat r + c enabled cycles after it entered; the flags reach it through one
    shared delay line tapped at r + c. A beat has therefore left the array R + C - 2 enabled cycles
    after it entered (the fill/drain skew). Results stay in the PEs' accumulators (`acc[r][c]`).
    """

    def __init__(self, *, rows: int, cols: int, act_bits: int = ACT_BITS, max_wbits: int = MAX_WBITS,
                 acc_bits: int = ACC_BITS):
        with rejecting(self):
            check_array_params(rows, cols)
            check_pe_params(act_bits, max_wbits, acc_bits)
        self.rows, self.cols = rows, cols
        self.act_bits, self.max_wbits, self.acc_bits = act_bits, max_wbits, acc_bits
        super().__init__({
            "en": In(1),
            "x": In(data.ArrayLayout(signed(act_bits + 1), rows)),
            "w": In(cols),
            "flags": In(BEAT_FLAGS),
            "acc": Out(data.ArrayLayout(data.ArrayLayout(signed(acc_bits), cols), rows)),
        })

    @property
    def skew(self) -> int:
        """Enabled cycles from a beat entering PE(0, 0) to it reaching PE(R-1, C-1)."""
        return self.rows + self.cols - 2

    def _delayed(self, m, value, depth: int, name: str):
        """`value` through `depth` enabled registers."""
        for i in range(depth):
            reg = Signal.like(value, name=f"{name}_d{i + 1}")
            with m.If(self.en):
                m.d.sync += reg.eq(value)
            value = reg
        return value

    def elaborate(self, platform):
        m = Module()
        taps = [self.flags]
        for i in range(self.skew):
            taps.append(self._delayed(m, taps[-1], 1, f"flags_{i}"))

        pe = [[None] * self.cols for _ in range(self.rows)]
        for r in range(self.rows):
            for c in range(self.cols):
                cell = pe[r][c] = BitSerialPE(act_bits=self.act_bits, max_wbits=self.max_wbits,
                                              acc_bits=self.acc_bits)
                m.submodules[f"pe_{r}_{c}"] = cell
                x_in = self._delayed(m, self.x[r], r, f"x_skew_{r}") if c == 0 else pe[r][c - 1].x_out
                w_in = self._delayed(m, self.w[c], c, f"w_skew_{c}") if r == 0 else pe[r - 1][c].w_out
                tap = taps[r + c]
                m.d.comb += [
                    cell.en.eq(self.en),
                    cell.x.eq(x_in),
                    cell.w_bit.eq(w_in),
                    cell.valid.eq(tap.valid),
                    cell.first.eq(tap.first),
                    cell.last.eq(tap.last),
                    cell.clear.eq(tap.clear),
                    self.acc[r][c].eq(cell.acc),
                ]
        return m
