"""The field network's dataflow, written once for every number format (docs/quant.md).

density.fc0 -> density.fc1 -> color.fc0 -> color.fc1 -> color.fc2. density.fc0 takes the hash
encoding; density.fc1's output 0 is the density, its outputs from GEO_FIRST on are the geometry
features, which color.fc0 takes joined with the SH values of the view direction; every other layer
takes the previous layer's activated output. density.fc1's output 0 and color.fc2's outputs leave
for the host (trunc_exp and sigmoid). The float model, the fake-quant path, the integer path and
the testbenches differ only in what a layer, an activation and the SH input are.
"""

from __future__ import annotations

from collections.abc import Callable

FIELD_LAYERS = ("density.fc0", "density.fc1", "color.fc0", "color.fc1", "color.fc2")
GEO_LAYER = "density.fc1"  # its outputs from GEO_FIRST on are the geometry features
GEO_FIRST = 1  # density.fc1's output 0 is the density
SH_LAYER = "color.fc0"  # its input: the geometry features, then the SH values
HOST_LAYERS = ("density.fc1", "color.fc2")  # their raw outputs leave for the host


def consumer(name: str) -> tuple[str, int] | None:
    """The layer whose input holds `name`'s activated outputs, and the column offset of output c
    in it (output c lands in column c + offset), or None for the last layer."""
    i = FIELD_LAYERS.index(name)
    if i == len(FIELD_LAYERS) - 1:
        return None
    return FIELD_LAYERS[i + 1], -GEO_FIRST if name == GEO_LAYER else 0


def run_field(encoding, sh, linear: Callable, activate: Callable, sh_input: Callable, join: Callable):
    """Run the field network: `linear(name, x)` is a layer's raw output, `activate(name, y)` turns
    (the activated part of) it into the next layer's input, `sh_input(sh)` gives the SH part of
    color.fc0's input and `join(geo, sh_part)` that input. Returns (inputs, raw): every layer's
    input and raw output by name."""
    inputs, raw = {}, {}
    x = encoding
    for name in FIELD_LAYERS:
        if name == SH_LAYER:
            x = join(x, sh_input(sh))
        inputs[name] = x
        raw[name] = y = linear(name, x)
        if consumer(name) is not None:
            x = activate(name, y[:, GEO_FIRST:] if name == GEO_LAYER else y)
    return inputs, raw
