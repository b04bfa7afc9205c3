"""The core's block diagram, drawn from its build parameters (docs/core.png).

    python -m rtl.diagram [-o docs/core.png] [core flags of rtl.gen, e.g. --rows 8 --cols 8]

Every size in the picture (memories, lanes, array, ports) is read from rtl.core.CoreParams and the
lane map (rtl.core.Net), so the diagram follows the RTL's parameters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hero import atomic, cli
from hero.intarith import ACT_BITS

from .core import BANKS, CoreParams, Target, layer_words
from .gen import add_core_flags, core_params_from, flag_error

#: (x, y, width, height) of each block, in axis units (the figure is 16 x 9).
BOXES = {
    "host": (0.2, 1.0, 1.8, 6.0),
    "config": (2.6, 7.4, 13.2, 0.8),
    "heu": (2.6, 4.4, 2.8, 2.2),
    "tables": (2.6, 1.8, 2.8, 1.6),
    "act": (6.2, 2.6, 3.4, 4.0),
    "seq": (6.2, 0.6, 3.4, 1.4),
    "weights": (10.4, 3.6, 2.2, 3.0),
    "requant": (12.9, 3.6, 2.9, 3.0),
    "engine": (10.4, 0.6, 3.6, 2.2),
    "raw": (14.4, 0.6, 1.4, 2.2),
}

def labels(p: CoreParams) -> dict[str, str]:
    """Each block's text, from the parameters."""
    net = p.net
    table_kib = p.depth * p.word_bits / 8 / 1024
    weight_kib = p.weight_depth * p.cols / 8 / 1024
    full_words = sum(layer_words(x, p.max_wbits, p.cols) for x in p.layers)
    bank = f"{net.enc} features + {net.geo} geometry + {net.sh} SH"
    return {
        "host": f"host\n\nsamples:\nposition (3 x u16)\n+ SH ({net.sh} x s8)\n\nresults:\nraw s{p.acc_bits}\n"
                f"density + {net.colors} colours\n\ntrunc_exp, sigmoid,\ncompositing",
        "config": "config port: one record {target, addr, data} per handshake, while idle  ("
                  + ", ".join(t.name for t in Target) + ")",
        "heu": f"HEU\n{p.levels} levels x {p.features} features\n8 corner lookups per level\n"
               f"1 lookup per cycle\n8L = {8 * p.levels} cycles per sample",
        "tables": f"table memory\n{p.depth} x {p.word_bits} bit\n({table_kib:g} KiB, levels bit-packed)",
        "act": f"activation file\n{p.rows} rows x {net.lanes} lanes x {ACT_BITS} bit\n\n"
               f"{BANKS} banks (batches), each:\n{bank}\nhidden ping + pong: 2 x {net.hidden}\n\n"
               f"written by rows, read by columns\n(one operand beat: lane k of {p.rows} rows)",
        "seq": "layer sequencer\ndensity.fc0 > density.fc1 >\ncolor.fc0 > color.fc1 > color.fc2\n"
               "ceil(C_out / C) tiles each",
        "weights": f"weight memory\n{p.weight_depth} x {p.cols}-bit\nplanes ({weight_kib:.1f} KiB)\n\n"
                   f"every layer at\n{p.max_wbits} bits: {full_words}",
        "requant": f"requant memory\n{p.fold_base[-1]} folds x {p.cols} columns\nx (u16 mult, u6 shift)\n\n"
                   f"layer registers\n{len(p.layers)} x (wbits, signed,\nReLU, out bits, base)",
        "engine": f"MLP engine\n{p.rows} x {p.cols} bit-serial PEs\n{p.max_wbits}-bit max weights, "
                  f"s{p.acc_bits} accumulators\nK*b + 2R + C + 4 cycles per tile",
        "raw": f"raw output\nregisters\n{p.rows} x {net.raw_outputs}\nx s{p.acc_bits}",
    }


#: Data paths: (x0, y0, x1, y1, label).
ARROWS = [
    (2.0, 5.5, 2.6, 5.5, "samples"),
    (5.4, 5.5, 6.2, 5.5, "features"),
    (4.0, 3.4, 4.0, 4.4, "lookups"),
    (9.6, 3.0, 10.4, 2.4, "operand x"),
    (10.4, 1.7, 9.3, 2.6, "drained rows"),
    (9.6, 0.9, 10.4, 0.9, "start / done"),
    (11.5, 3.6, 11.5, 2.8, "weight bits"),
    (13.3, 3.6, 13.3, 2.8, "mult, shift"),
    (14.0, 1.7, 14.4, 1.7, ""),
]
#: The result stream, from the raw output registers back to the host, below the blocks.
RESULT_PATH = [(15.1, 0.6), (15.1, 0.25), (1.1, 0.25), (1.1, 1.0)]


def draw(p: CoreParams, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(16, 9))
    ax.set_xlim(0, 16)
    ax.set_ylim(0, 9)
    ax.axis("off")
    text = labels(p)
    colours = {"host": "#eeeeee", "config": "#fff2cc", "heu": "#dae8fc", "tables": "#dae8fc", "act": "#d5e8d4",
               "seq": "#f8cecc", "weights": "#e1d5e7", "requant": "#e1d5e7", "engine": "#ffe6cc", "raw": "#d5e8d4"}
    for name, (x, y, w, h) in BOXES.items():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colours[name], ec="#333333"))
        ax.text(x + w / 2, y + h / 2, text[name], ha="center", va="center", fontsize=9)
    arrow = {"arrowstyle": "->", "lw": 1.5, "color": "#333333"}
    for x0, y0, x1, y1, label in ARROWS:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=arrow)
        if label:
            ax.text((x0 + x1) / 2 + (0.1 if x0 == x1 else 0), (y0 + y1) / 2 + (0 if x0 == x1 else 0.1), label,
                    ha="left" if x0 == x1 else "center", fontsize=8, color="#333333")
    xs, ys = zip(*RESULT_PATH, strict=True)
    ax.plot(xs[:-1], ys[:-1], color="#333333", lw=1.5)
    ax.annotate("", xy=RESULT_PATH[-1], xytext=RESULT_PATH[-2], arrowprops=arrow)
    ax.text(8, 0.32, "result stream: one sample's raw outputs per handshake, in input order", ha="center",
            fontsize=8, color="#333333")
    for name in ("heu", "act", "weights", "requant"):  # the HEU writes its own table memory
        x, y, w, h = BOXES[name]
        ax.annotate("", xy=(x + 0.85 * w, y + h), xytext=(x + 0.85 * w, BOXES["config"][1]),
                    arrowprops={"arrowstyle": "->", "lw": 0.8, "color": "#b58900", "ls": "--"})
    ax.text(8, 8.65, f"rtl.core.Core: {p.levels} levels, hidden {p.hidden}, {p.rows} x {p.cols} array "
                     "(HEU encodes one batch while the engine runs the other)", ha="center", fontsize=12)
    atomic.save_figure(out, fig, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m rtl.diagram", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_core_flags(ap)
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/core.png"), help="PNG, default docs/core.png")
    a = ap.parse_args(argv)
    try:
        p = core_params_from(a)
    except ValueError as e:
        ap.error(flag_error(str(e)))
    try:
        print(f"wrote {draw(p, a.out)}")
    except atomic.OutputError as e:
        ap.error(f"-o {a.out}: cannot write there ({e})")
    except OSError as e:
        ap.error(f"-o {a.out}: cannot write there ({e.strerror or e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
