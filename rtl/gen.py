"""Write standalone Verilog for FPGA trials.

    python -m rtl.gen mlp-engine --rows 8 --cols 8 --max-wbits 8 -o build/verilog/ [--lint]
    python -m rtl.gen heu --levels 16 --features 2 --log2t 14 --word-bits 32 -o build/verilog/ [--lint]
    python -m rtl.gen core --levels 16 --hidden 64 --rows 8 --cols 8 -o build/verilog/ [--lint]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog

from hero import atomic, cli

from .core import Core, CoreParams
from .heu import HEU
from .mlp_engine import MLPEngine

#: Verilator warnings that Amaranth's output raises by construction: width-extending assigns,
#: and one `casez` per FSM-driven signal listing only the states that drive it (the default
#: assignment before the case covers the rest). Waived inside the file, so a plain
#: `verilator --lint-only` accepts it; every other warning stays on.
VERILATOR_WAIVERS = ("WIDTH", "CASEINCOMPLETE")


#: The default core's parameters: the defaults of the blocks and of every flag below.
CORE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CoreParams)}
_D = CORE_DEFAULTS


def mlp_engine(rows: int = _D["rows"], cols: int = _D["cols"], max_wbits: int = _D["max_wbits"],
               acc_bits: int = _D["acc_bits"]) -> MLPEngine:
    return MLPEngine(rows=rows, cols=cols, max_wbits=max_wbits, acc_bits=acc_bits)


def heu(levels: int = _D["levels"], features: int = _D["features"], log2t: int = _D["log2t"],
        word_bits: int = _D["word_bits"], depth: int | None = None) -> HEU:
    return HEU(levels=levels, features=features, log2t=log2t, word_bits=word_bits, depth=depth)


def to_verilog(component, name: str) -> str:
    header = "".join(f"/* verilator lint_off {w} */\n" for w in VERILATOR_WAIVERS)
    return header + verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, name: str, out_dir: str | os.PathLike) -> Path:
    """Convert `component` to `out_dir/name.v`, written atomically; returns the path."""
    return atomic.write(Path(out_dir) / f"{name}.v", to_verilog(component, name))


def verilator_lint(path: Path, top: str) -> subprocess.CompletedProcess:
    if shutil.which("verilator") is None:
        raise RuntimeError("verilator is not installed: run `make install`")
    return subprocess.run(["verilator", "--lint-only", "--top-module", top, str(path)],
                           capture_output=True, text=True)


def _param(parser, field: str, what: str) -> None:
    parser.add_argument("--" + field.replace("_", "-"), type=int, default=CORE_DEFAULTS[field],
                        help=f"{what}, default {CORE_DEFAULTS[field]}")


def add_core_flags(parser) -> None:
    """The core's build parameters as flags (defaults: rtl.core.CoreParams's)."""
    for field, what in (("levels", "grid levels L"), ("features", "features per entry F"),
                        ("log2t", "log2 of the table size T per level"), ("word_bits", "table memory word width W"),
                        ("hidden", "hidden width of the MLPs"), ("geo", "geometry features"),
                        ("rows", "PE rows R (samples per batch)"), ("cols", "PE columns C"),
                        ("max_wbits", "widest weight")):
        _param(parser, field, what)
    parser.add_argument("--depth", type=int, default=None, help="table memory words (default: every level at 8 bits)")
    parser.add_argument("--weight-depth", type=int, default=None,
                        help="weight memory words (default: every layer at --max-wbits)")


def core_params_from(args) -> CoreParams:
    """CoreParams from add_core_flags's flags (ValueError names the bad one)."""
    return CoreParams(levels=args.levels, features=args.features, log2t=args.log2t, word_bits=args.word_bits,
                      depth=args.depth, hidden=args.hidden, geo=args.geo, rows=args.rows, cols=args.cols,
                      max_wbits=args.max_wbits, weight_depth=args.weight_depth)


def flag_error(msg: str) -> str:
    """A CoreParams/block ValueError, with the parameter named as its flag."""
    for attr in CORE_DEFAULTS:
        if msg.startswith(attr + " ") or msg.startswith(attr + "="):
            return f"--{attr.replace('_', '-')}: {msg}"
    return msg


def _parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m rtl.gen", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="block", required=True, metavar="BLOCK")
    m = sub.add_parser("mlp-engine", help="bit-serial PE array with control and requantizers")
    for field, what in (("rows", "PE rows R (samples per tile)"), ("cols", "PE columns C (outputs per tile)"),
                        ("max_wbits", "widest weight"), ("acc_bits", "accumulator width")):
        _param(m, field, what)
    h = sub.add_parser("heu", help="hash encoding unit: multi-resolution hash grid, one lookup per cycle")
    for field, what in (("levels", "grid levels L"), ("features", "features per entry F"),
                        ("log2t", "log2 of the table size T per level"), ("word_bits", "table memory word width W")):
        _param(h, field, what)
    h.add_argument("--depth", type=int, default=None,
                   help="table memory words (default: L levels of T 8-bit entries)")
    c = sub.add_parser("core", help="the accelerator: HEU, activation file, weight memory, MLP engine, sequencer")
    add_core_flags(c)
    for s in (m, h, c):
        s.add_argument("-o", "--out", default="build/verilog", help="output folder, default build/verilog")
        s.add_argument("--name", default=None, help="top module and file name (default: the block's)")
        s.add_argument("--lint", action="store_true", help="run verilator --lint-only on the result")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.block == "mlp-engine":
            name = args.name or "mlp_engine"
            component = mlp_engine(args.rows, args.cols, args.max_wbits, args.acc_bits)
        elif args.block == "heu":
            name = args.name or "heu"
            component = heu(args.levels, args.features, args.log2t, args.word_bits, args.depth)
        else:
            name = args.name or "core"
            component = Core(core_params_from(args))
    except ValueError as e:
        parser.error(flag_error(str(e)))
    if not name.isidentifier():
        parser.error(f"--name must be a Verilog identifier, got {name!r}")
    try:
        path = write_verilog(component, name, args.out)
    except atomic.OutputError as e:
        parser.error(f"-o {args.out}: cannot write there ({e})")
    except OSError as e:
        parser.error(f"-o {args.out}: cannot write there ({e.strerror})")
    print(f"wrote {path}")
    if args.lint:
        res = verilator_lint(path, name)
        if res.returncode:
            sys.stderr.write(res.stdout + res.stderr)
            print(f"verilator --lint-only: FAILED on {path}", file=sys.stderr)
            return 1
        print("verilator --lint-only: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
