"""BitSerialPE: one multiply-accumulate cell with bit-serial weights and parallel activations."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hero.intarith import ACC_BITS, ACT_BITS, MAX_WBITS, MIN_WBITS

from .params import check_int, rejecting


def check_pe_params(act_bits: int, max_wbits: int, acc_bits: int) -> None:
    """Raise ValueError naming the parameter that is out of range."""
    check_int("act_bits", act_bits, 2, 16)
    check_int("max_wbits", max_wbits, MIN_WBITS, 16)
    check_int("acc_bits", acc_bits, 16, 62)
    if acc_bits < act_bits + max_wbits + 1:
        raise ValueError(f"acc_bits={acc_bits} cannot hold one product of act_bits={act_bits} and "
                         f"max_wbits={max_wbits}: it must be at least {act_bits + max_wbits + 1}")


class BitSerialPE(wiring.Component):
    """acc += x * w, with w arriving one bit per cycle, most significant (sign) bit first.

    Per weight the PE runs Horner's rule on a partial product p:
    on `first` p = -x*bit (the sign bit weighs -2**(wbits-1)), otherwise p = 2*p + x*bit.
    On `last` the finished product goes into a product register, and in the next enabled cycle it
    is added to `acc`, or loaded into it when `clear` was set (the first weight of a tile). The
    product register cuts the Horner add from the accumulator add (the critical path, docs/fpga.md):
    a product reaches `acc` one enabled cycle after its last bit
    (sim_py.mlp_engine.PRODUCT_STAGES). The weight width is
    set at run time by where the `first` and `last` flags fall, from 2 bits up to `max_wbits`.

    `x` is the activation already sign- or zero-extended to act_bits + 1 bits, so one PE takes
    unsigned activations (after a fused ReLU) and signed ones (a first layer's inputs).
    `x_out` and `w_out` pass the operands on to the right and downward neighbours one cycle later.
    Nothing moves unless `en` is high; p and acc change only when `valid` is high too.
    """

    def __init__(self, *, act_bits: int = ACT_BITS, max_wbits: int = MAX_WBITS, acc_bits: int = ACC_BITS):
        with rejecting(self):
            check_pe_params(act_bits, max_wbits, acc_bits)
        self.act_bits, self.max_wbits, self.acc_bits = act_bits, max_wbits, acc_bits
        super().__init__({
            "en": In(1),
            "x": In(signed(act_bits + 1)),
            "w_bit": In(1),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "clear": In(1),
            "x_out": Out(signed(act_bits + 1)),
            "w_out": Out(1),
            "acc": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        # |x| <= 2**act_bits and |partial weight| <= 2**(max_wbits-1), so this never overflows.
        partial = Signal(signed(self.act_bits + self.max_wbits + 1))
        term = Signal(signed(self.act_bits + 1))
        partial_next = Signal.like(partial)
        m.d.comb += [
            term.eq(Mux(self.w_bit, self.x, 0)),
            partial_next.eq(Mux(self.first, -term, (partial << 1) + term)),
        ]
        product = Signal.like(partial)
        product_valid = Signal()
        product_clear = Signal()
        with m.If(self.en):
            m.d.sync += [self.x_out.eq(self.x), self.w_out.eq(self.w_bit),
                         product_valid.eq(self.valid & self.last)]
            with m.If(product_valid):
                m.d.sync += self.acc.eq(Mux(product_clear, product, self.acc + product))
            with m.If(self.valid):
                m.d.sync += partial.eq(partial_next)
                with m.If(self.last):
                    m.d.sync += [product.eq(partial_next), product_clear.eq(self.clear)]
        return m
