"""Pure Verilator (C++) drivers, for measuring raw simulation speed without cocotb in the loop."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from rtl.gen import to_verilog
from verif.sim import ROOT, verilator_version

HERE = Path(__file__).resolve().parent


def build_native(component, toplevel: str, driver: str) -> Path:
    """Verilate `component` with the C++ driver `verif/native/<driver>`; returns the executable."""
    text = to_verilog(component, toplevel)
    cpp = HERE / driver
    key = hashlib.sha256(f"{verilator_version()}|{text}|{cpp.read_text()}".encode()).hexdigest()[:16]
    out = ROOT / "build" / "native" / f"{toplevel}-{key}"
    exe = out / "speed"
    if not exe.exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{toplevel}.v").write_text(text)
        subprocess.run(["verilator", "--cc", "--exe", "--build", "-O3", "-j", "2", "--top-module", toplevel,
                        "-Mdir", str(out / "obj"), "-o", str(exe), "-CFLAGS", "-O2 -std=c++17",
                        str(out / f"{toplevel}.v"), str(cpp)],
                       check=True, capture_output=True, text=True)
    return exe
