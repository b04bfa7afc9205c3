"""Build Amaranth components into Verilator simulators and run cocotb testbenches on them.

Builds are cached under build/sim/ by a hash of the Verilog and the build flags, so one build
serves every test of a configuration. With WAVES=1 the simulator is built with tracing and each
test writes build/waves/<toplevel>-<test>.vcd.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from rtl.gen import to_verilog

ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = ROOT / "build" / "sim"
WAVES_ROOT = ROOT / "build" / "waves"
PARAMS_ENV = "HERO_TB_PARAMS"
warnings.filterwarnings("ignore", message="Python runners and associated APIs are an experimental feature")


def waves_enabled() -> bool:
    return os.environ.get("WAVES", "0") not in ("", "0")


def verilator_version() -> str:
    if shutil.which("verilator") is None:
        raise RuntimeError("verilator is not installed: run `make install`")
    return subprocess.run(["verilator", "--version"], capture_output=True, text=True).stdout.strip()


@dataclass(frozen=True)
class VerilatorBuild:
    build_dir: Path
    toplevel: str
    waves: bool


def build(component, toplevel: str, waves: bool | None = None) -> VerilatorBuild:
    """Verilate `component` as module `toplevel`, reusing an identical earlier build."""
    from cocotb.runner import get_runner  # noqa: I001

    waves = waves_enabled() if waves is None else waves
    text = to_verilog(component, toplevel)
    key = hashlib.sha256(f"{verilator_version()}|waves={waves}|{text}".encode()).hexdigest()[:16]
    build_dir = BUILD_ROOT / f"{toplevel}-{key}"
    done = build_dir / ".built"
    if not done.exists():
        src = build_dir / f"{toplevel}.v"
        build_dir.mkdir(parents=True, exist_ok=True)
        src.write_text(text)
        with contextlib.redirect_stdout(io.StringIO()):  # the runner's chatter; the log has the output
            get_runner("verilator").build(
                verilog_sources=[src], hdl_toplevel=toplevel, build_dir=build_dir, waves=waves,
                build_args=["-O3", "--x-assign", "fast", "--x-initial", "fast"], always=True,
                log_file=build_dir / "build.log",
            )
        done.touch()
    return VerilatorBuild(build_dir, toplevel, waves)


def run(sim: VerilatorBuild, test_module: str, testcase: str, params: dict, seed: int = 1,
        tag: str | None = None) -> None:
    """Run one cocotb test case on a build; raise AssertionError unless it ran and passed.

    `tag` names the configuration in the waveform's file name (default: the top module's name).
    """
    from cocotb.runner import get_results, get_runner

    test_dir = sim.build_dir / "runs" / testcase
    test_args = []
    if sim.waves:
        WAVES_ROOT.mkdir(parents=True, exist_ok=True)
        test_args = ["--trace-file", str(WAVES_ROOT / f"{tag or sim.toplevel}-{testcase}.vcd")]
    test_dir.mkdir(parents=True, exist_ok=True)
    log = test_dir / "sim.log"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            results = get_runner("verilator").test(
                test_module=test_module, hdl_toplevel=sim.toplevel, build_dir=sim.build_dir, test_dir=test_dir,
                hdl_toplevel_lang="verilog", testcase=testcase, seed=seed, waves=sim.waves, test_args=test_args,
                extra_env={PARAMS_ENV: json.dumps(params), "PYTHONPATH": str(ROOT)}, log_file=log,
            )
    except (RuntimeError, SystemExit) as e:  # cocotb's runner raises these for failed tests under pytest
        raise AssertionError(f"{testcase}: {e}\n{_tail(log)}") from None
    n_tests, n_failed = get_results(results)
    assert n_tests >= 1, f"cocotb ran no test named {testcase!r} in {test_module}\n{_tail(log)}"
    assert n_failed == 0, f"{n_failed} cocotb test(s) failed; see {log}\n{_tail(log)}"


def _tail(log: Path, lines: int = 80) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"


def tb_params() -> dict:
    """Inside a cocotb testbench: the parameters the pytest side passed."""
    return json.loads(os.environ[PARAMS_ENV])
