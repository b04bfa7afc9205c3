"""python -m hero.sweep SWEEP.toml: every scene x hardware x seed x method of the sweep file, as Ray tasks.

Each job (training of its scene when needed, the search, its final QAT and test-view scoring) is a
task on a local Ray started here with as many workers as the machine has cores (--num-cpus), or on
the cluster at --address. Rerunning the same command skips the finished jobs. Results in the out
folder: results.csv, summary.md, a PNG per scene and preset (docs/search.md#sweeps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero import cli


def parser() -> argparse.ArgumentParser:
    ap = cli.ArgumentParser(prog="python -m hero.sweep", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", type=Path, help="the sweep file (TOML)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: the file's `out`, else "
                                                           "runs/sweep)")
    ap.add_argument("--address", default=None, help="an existing Ray cluster (e.g. auto, or HOST:PORT); default: "
                                                    "start a local Ray")
    ap.add_argument("--num-cpus", type=cli.number(int, lo=1), default=None,
                    help="workers of the local Ray (default: the machine's cores)")
    return ap


def main(argv=None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    if a.address is not None and a.num_cpus is not None:
        ap.error("--num-cpus: only for the local Ray; a cluster at --address has its own workers")
    from .config import load_sweep

    try:
        sw = load_sweep(a.sweep, a.out)
        from .report import write_results
        from .run import run_sweep

        res = run_sweep(sw, address=a.address, num_cpus=a.num_cpus, log=lambda m: print(m, flush=True))
        write_results(sw.out, res["rows"], sw.path, res["seconds"])
    except KeyboardInterrupt as e:
        return cli.interrupted(e)
    except cli.BadInput as e:  # SweepError: the sweep file; its scenes, checkpoints, presets, --out
        return cli.refuse(str(e))
    rows = res["rows"]
    failed = [r for r in rows if r["status"] != "done"]
    print(f"{len(rows) - len(failed)} jobs done, {len(failed)} failed; {res['ran']} run now in "
          f"{res['seconds'] / 60:.1f} min; results in {sw.out} (results.csv, summary.md)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
