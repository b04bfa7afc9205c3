"""Frame latency breakdown of a trained scene on the accelerator, as data and as a plot.

    python -m sim_py.report --ckpt runs/NAME/checkpoint.pt --hw fpga_ecp5 --out runs/NAME/latency \\
        [--backend rtl_calibrated] [--policies uniform8,uniform4] [--view 0]

Writes breakdown.json (cycles and milliseconds per part, per policy) and breakdown.png.
A policy here is `uniformN`: every table level and every layer's weights at N bits. The frame is
the checkpoint's own test view, at the checkpoint's own downscale (no --downscale here).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero import atomic, cli
from hero.intarith import MIN_WBITS

from .backends import BACKENDS, get_backend
from .frame import Breakdown, FrameModel
from .hw import HardwareError, load_hardware
from .workload import Workload, workload_from_frame

NGPC_ENCODING_PLUS_MLP = 0.72  # NGPC (ISCA 2023): share of NeRF time in encoding + MLP
PARTS = ("encoding", "mlp", "memory_stall", "other")
COLOURS = {"encoding": "#4C72B0", "mlp": "#DD8452", "memory_stall": "#C44E52", "other": "#8C8C8C"}


def parse_uniform(name: str) -> int:
    if not name.startswith("uniform") or not name[7:].isdigit():
        raise cli.BadInput(f"--policies: '{name}' is not a policy name of the form uniformN (e.g. uniform4)")
    return int(name[7:])


def frame_workload_from_checkpoint(ckpt: Path, view: int = 0, **kw) -> Workload:
    """The workload of test view `view` of the checkpoint's own scene."""
    import torch

    from hero import checkpoint
    from hero.nerf.render import camera_meta
    from hero.quant.calib import checkpoint_scene

    model, meta = checkpoint.load(ckpt)
    r = meta["render"]
    scene = checkpoint_scene(meta, "test")
    if not 0 <= view < len(scene.c2w):
        raise cli.BadInput(f"--view {view}: the test split has {len(scene.c2w)} views (give 0..{len(scene.c2w) - 1})")
    return workload_from_frame(model, r.grid, torch.from_numpy(scene.c2w[view]), camera_meta(scene), r.dt,
                               r.max_steps, name=f"{Path(r.data).name} test view {view}", **kw)


def breakdown_dict(b: Breakdown) -> dict:
    ms = 1.0 / (b.clock_mhz * 1e3)
    return {"total_cycles": b.total, "total_ms": b.ms, **{f"{p}_cycles": getattr(b, p) for p in PARTS},
            **{f"{p}_ms": getattr(b, p) * ms for p in PARTS}, "shares": b.shares(),
            "encoding_plus_mlp_share": b.shares()["encoding"] + b.shares()["mlp"],
            "bound": b.details["bound"], "details": b.details}


def plot(results: dict[str, Breakdown], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.8 * len(names)))
    for i, name in enumerate(names):
        b = results[name]
        left = 0.0
        for part in PARTS:
            v = getattr(b, part) / (b.clock_mhz * 1e3)
            ax.barh(i, v, left=left, color=COLOURS[part], label=part.replace("_", " ") if i == 0 else None)
            left += v
        ax.plot([b.ms, b.ms], [i - 0.45, i + 0.45], color="black", lw=2, label="frame latency" if i == 0 else None)
        share = b.shares()["encoding"] + b.shares()["mlp"]
        ax.text(left, i, f"  {b.ms:.1f} ms, enc+MLP {share:.0%} (NGPC ~{NGPC_ENCODING_PLUS_MLP:.0%})",
                va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("unit busy time per frame (ms); bars overlap in time, the black line is the frame latency")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlim(0, max(sum(getattr(b, p) for p in PARTS) / (b.clock_mhz * 1e3) for b in results.values()) * 1.6)
    fig.tight_layout()
    atomic.save_figure(path, fig, dpi=120)
    plt.close(fig)


def parser() -> cli.ArgumentParser:
    ap = cli.ArgumentParser(prog="python -m sim_py.report", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="a checkpoint from python -m hero.train")
    ap.add_argument("--hw", default="fpga_ecp5", help="hardware preset name or TOML file")
    ap.add_argument("--backend", default="rtl_calibrated", choices=BACKENDS)
    ap.add_argument("--policies", default="uniform8,uniform4")
    ap.add_argument("--view", type=cli.number(int, lo=0), default=0, help="test view index")
    ap.add_argument("--out", type=Path, required=True)
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        policies = {p: parse_uniform(p) for p in a.policies.split(",")}
        hw = load_hardware(a.hw)
        for name, b in policies.items():
            if not MIN_WBITS <= b <= hw.max_wbits:
                raise cli.BadInput(f"--policies {name}: {hw.name} takes {MIN_WBITS}..{hw.max_wbits} bits")
        if a.ckpt.is_dir():
            raise cli.BadInput(f"--ckpt {a.ckpt}: is a folder, expected a checkpoint file (.pt)")
        if not a.ckpt.is_file():
            raise cli.BadInput(f"--ckpt {a.ckpt}: no such file")
        atomic.check_folder(a.out)
        status = cli.Status(True)
        status(f"tracing the samples of test view {a.view} of {a.ckpt} (occupancy skipping)")
        wl = frame_workload_from_checkpoint(a.ckpt, a.view)
        status(f"{wl.n_samples} samples; querying the cycle model")
        fm = FrameModel(wl, hw, get_backend(a.backend))
        results = {name: fm.query([b] * len(wl.levels), [b] * len(wl.layers)) for name, b in policies.items()}
    except (ValueError, HardwareError, RuntimeError) as e:
        return cli.refuse(str(e))
    title = f"{wl.name}, {wl.height}x{wl.width}, {wl.n_samples} samples; {hw.name} @ {hw.clock_mhz:g} MHz"
    atomic.write_json(a.out / "breakdown.json", {"workload": wl.name, "hardware": hw.name, "backend": a.backend,
                                                 "samples": wl.n_samples,
                                                 "policies": {k: breakdown_dict(v) for k, v in results.items()}})
    plot(results, title, a.out / "breakdown.png")
    for name, b in results.items():
        s = b.shares()
        print(f"{name:>10}: {b.ms:9.2f} ms  bound by {b.details['bound']:<8} shares: "
              + "  ".join(f"{p} {s[p]:.0%}" for p in PARTS))
    print(f"wrote {a.out / 'breakdown.json'} and {a.out / 'breakdown.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
