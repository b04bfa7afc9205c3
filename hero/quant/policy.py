"""Quantization policies: a bit width per hash level, per layer's weights and per layer's input.

A policy is a plain JSON file keyed by the model's stable unit names (model.quant_units()):

    {"format": "hero-policy/1",
     "tables":      {"grid.level00": 8, ...},     every hash level's table, 2..8 bits
     "weights":     {"density.fc0": 8, ...},      every linear layer's weights, 2..8 bits
     "activations": {"density.fc1": 8, ...}}      every linear layer's input activations, 2..8 bits

`density.fc0`'s input is the hash encoding unit's output, which is s8 by construction, so its
activation width is 8 and may be left out. docs/quant.md describes the formats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hero import atomic
from hero.cli import BadInput, read_file
from hero.intarith import ACT_BITS, MAX_WBITS, MIN_WBITS
from hero.nerf.dataflow import FIELD_LAYERS

FORMAT = "hero-policy/1"
FIRST_LAYER = FIELD_LAYERS[0]  # its input is the HEU's s8 output


class PolicyError(BadInput):
    """A policy that cannot be applied, naming the file and the entry."""


@dataclass
class Policy:
    tables: dict[str, int]
    weights: dict[str, int]
    activations: dict[str, int]

    @classmethod
    def uniform(cls, model, bits: int, act_bits: int = ACT_BITS, table_bits: int | None = None) -> Policy:
        tables, weights, acts = {}, {}, {}
        for name, kind, _ in model.quant_units():
            if kind == "hash_level":
                tables[name] = table_bits or bits
            else:
                weights[name] = bits
                acts[name] = ACT_BITS if name == FIRST_LAYER else act_bits
        return cls(tables, weights, acts)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "tables": self.tables, "weights": self.weights, "activations": self.activations}

    def save(self, path: str | Path) -> None:
        atomic.write_json(path, self.to_dict())

    def mean_bits(self) -> float:
        values = list(self.tables.values()) + list(self.weights.values())
        return sum(values) / len(values)


def policy_from_dict(raw, model, where: str = "policy") -> Policy:
    """Validate a parsed policy against the model; every error names `where` and the entry."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if raw.get("format", FORMAT) != FORMAT:
        raise PolicyError(f"{where}: format {raw.get('format')!r} is not {FORMAT!r}")
    unknown_sections = sorted(set(raw) - {"format", "tables", "weights", "activations"})
    if unknown_sections:
        raise PolicyError(f"{where}: unknown section(s) {', '.join(unknown_sections)}; a policy has format, tables, "
                          "weights and activations")
    units = model.quant_units()
    levels = [n for n, k, _ in units if k == "hash_level"]
    layers = [n for n, k, _ in units if k == "linear"]
    acts_raw = raw.get("activations", {})
    if isinstance(acts_raw, dict):
        acts_raw = {FIRST_LAYER: ACT_BITS, **acts_raw}
    sections = {"tables": (levels, raw.get("tables")), "weights": (layers, raw.get("weights")),
                "activations": (layers, acts_raw)}
    out = {}
    for section, (names, values) in sections.items():
        if not isinstance(values, dict):
            got = "missing" if values is None else f"{json.dumps(values)[:40]}"
            raise PolicyError(f"{where}: section '{section}' is {got}; expected an object of unit name -> bits "
                              f"({MIN_WBITS}..{MAX_WBITS})")
        missing = [n for n in names if n not in values]
        extra = sorted(set(values) - set(names))
        if missing:
            raise PolicyError(f"{where}: {section} has no entry for {', '.join(missing)} (every unit needs a bit "
                              f"width, {MIN_WBITS}..{MAX_WBITS})")
        if extra:
            raise PolicyError(f"{where}: {section} names unknown unit(s) {', '.join(extra)}; "
                              f"the model's are {', '.join(names)}")
        for n in names:
            b = values[n]
            if not isinstance(b, int) or isinstance(b, bool) or not MIN_WBITS <= b <= MAX_WBITS:
                raise PolicyError(f"{where}: {section}.{n} must be an integer in {MIN_WBITS}..{MAX_WBITS}, got {b!r}")
        out[section] = {n: int(values[n]) for n in names}
    if out["activations"][FIRST_LAYER] != ACT_BITS:
        raise PolicyError(f"{where}: activations.{FIRST_LAYER} is the hash encoding unit's s8 output and must be "
                          f"{ACT_BITS}, got {out['activations'][FIRST_LAYER]}")
    return Policy(out["tables"], out["weights"], out["activations"])


def load_policy(path: str | Path, model) -> Policy:
    """A policy JSON file, validated against `model`; PolicyError naming the file for anything else."""
    raw = read_file(path, "a policy JSON file (or uniformN, e.g. uniform4)", PolicyError, json.loads, "JSON")
    return policy_from_dict(raw, model, str(path))
