"""Requantizer: accumulator to next-layer activation, by integer multiplier and shift."""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hero.intarith import ACC_BITS, ACT_BITS, REQ_MULT_BITS, REQ_SHIFT_BITS


class Requantizer(wiring.Component):
    """q = saturate(floor((acc * mult + 2**(shift-1)) / 2**shift)).

    With `relu` the result saturates to unsigned [0, 2**out_bits - 1] (the fused ReLU);
    without, to signed [-2**(out_bits-1), 2**(out_bits-1) - 1]. `q` is the act_bits-wide two's
    complement (or unsigned) pattern of the result. Matches hero.intarith.requantize bit for bit.

    `pipelined=False`: combinational. `pipelined=True`: three registers (the product, the rounded
    and shifted value, q; sim_py.mlp_engine.REQUANT_STAGES), each advancing when `en` is high, so
    `q` is the requantization of the `acc` seen three enabled cycles before. The configuration
    inputs (mult, shift, relu, out_bits) are not pipelined: hold them while values are in flight.
    """

    def __init__(self, *, acc_bits: int = ACC_BITS, act_bits: int = ACT_BITS, pipelined: bool = False):
        self.acc_bits, self.act_bits, self.pipelined = acc_bits, act_bits, pipelined
        ports = {
            "acc": In(signed(acc_bits)),
            "mult": In(unsigned(REQ_MULT_BITS)),
            "shift": In(unsigned(REQ_SHIFT_BITS)),
            "relu": In(1),
            "out_bits": In(range(act_bits + 1)),
            "q": Out(act_bits),
        }
        if pipelined:
            ports["en"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        stage = m.d.sync if self.pipelined else m.d.comb
        prod_bits = self.acc_bits + REQ_MULT_BITS + 1
        prod = Signal(signed(prod_bits))
        # Wide enough for the rounding constant at the largest shift.
        wide = max(prod_bits, 1 << REQ_SHIFT_BITS) + 1
        shifted = Signal(signed(wide))
        half = Signal(unsigned(1 << REQ_SHIFT_BITS))
        lo = Signal(signed(self.act_bits + 1))
        hi = Signal(signed(self.act_bits + 1))
        full = Signal(unsigned(self.act_bits + 1))  # 2**out_bits
        clamped = Signal(self.act_bits)
        m.d.comb += [
            full.eq(Const(1, 1) << self.out_bits),
            half.eq((Const(1, 1) << self.shift) >> 1),
            lo.eq(Mux(self.relu, 0, -(full >> 1))),
            hi.eq(Mux(self.relu, full - 1, (full >> 1) - 1)),
        ]
        with m.If(shifted < lo):
            m.d.comb += clamped.eq(lo)
        with m.Elif(shifted > hi):
            m.d.comb += clamped.eq(hi)
        with m.Else():
            m.d.comb += clamped.eq(shifted)
        steps = [prod.eq(self.acc * self.mult), shifted.eq((prod + half) >> self.shift), self.q.eq(clamped)]
        if self.pipelined:
            with m.If(self.en):
                stage += steps
        else:
            stage += steps
        return m
