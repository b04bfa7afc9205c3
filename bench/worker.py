"""A bench's variant run in its own process (`python -m MODULE ARGS`), its result the JSON object on its
last line of output."""

from __future__ import annotations

import json
import subprocess
import sys

from hero import cli


def run_json(module: str, args: list[str]) -> dict:
    """The worker's result. A worker's refusal of its input is passed on as its one line and exit status
    cli.BAD_INPUT; any other failure prints the end of its error output and exits 1."""
    r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    if r.returncode == cli.BAD_INPUT:
        print(r.stderr.strip().splitlines()[-1], file=sys.stderr)
        raise SystemExit(cli.BAD_INPUT)
    if r.returncode != 0:
        print(r.stderr[-3000:])
        raise SystemExit(1)
    return json.loads(r.stdout.strip().splitlines()[-1])
