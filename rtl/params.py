"""Parameter checks shared by the RTL components: one clear ValueError naming the parameter."""

from contextlib import contextmanager


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
