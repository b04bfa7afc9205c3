"""CAQ (A-CAQ, Liu et al., ECCV 2024), reimplemented as the baseline HERO is measured against.

Learned bit widths: a soft bit and a trainable range per quantizer, one width for the whole hash
table, and CAQ's two-objective step (docs/caq.md). `python -m hero.caq --ckpt CKPT --out DIR`.
"""

from .field import CAQField, slots
from .quantizer import Quantizer, SoftBit, fake_quantize
from .run import STATE, TARGETS, caq

__all__ = ["CAQField", "Quantizer", "STATE", "SoftBit", "TARGETS", "caq", "fake_quantize", "slots"]
