"""Parameter checks shared by the RTL components: one clear ValueError naming the parameter."""

from contextlib import contextmanager

from amaranth import Const

#: The default build of every block and of the core (rtl.core.CoreParams): 16 levels of 2 x 2^14
#: entries, an 8 x 8 array.
LEVELS, FEATURES, LOG2T = 16, 2, 14
ROWS, COLS = 8, 8


def check_int(name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


@contextmanager
def rejecting(component):
    """Wrap a component's parameter checks: a rejected component is not reported as unused."""
    try:
        yield
    except ValueError:
        component._MustUse__silence = True
        raise


def at_most(value, limit: int):
    """`value <= limit` for an unsigned signal; a constant 1 where `limit` is the largest value the signal
    holds (e.g. wbits of range(8) against max_wbits = 7), a comparison Verilator's lint refuses as
    constant (CMPCONST)."""
    return Const(1) if limit >= (1 << len(value)) - 1 else value <= limit
