"""Hash-grid encoding, forward + backward: the native CPU kernel against the straightforward pure-PyTorch
implementation (hero.nerf.hashgrid.encode_reference, autograd backward), on the same inputs, in one run.

Usage: python -m bench.hashgrid [--n 262144] [--repeats 3] [--config cpu|paper]
Last line: speedup=<x> max_abs_err=<e>  (error: max over the forward features and the table gradients)
"""

from __future__ import annotations

import statistics
import time

import torch

from hero import cli
from hero.nerf.cpu import tune_allocator
from hero.nerf.hashgrid import HashGrid, encode_reference, native
from hero.nerf.presets import preset

BOUND = 1.5  # NeRF-synthetic box half-size, as in training


def fwd_bwd_native(g: HashGrid, x: torch.Tensor, go: torch.Tensor) -> torch.Tensor:
    g.embeddings.grad = None
    g(x).backward(go)
    return g.embeddings.grad


def fwd_bwd_reference(g: HashGrid, x: torch.Tensor, go: torch.Tensor) -> torch.Tensor:
    g.embeddings.grad = None
    encode_reference(x, g.embeddings, g.params).backward(go)
    return g.embeddings.grad


def main(argv=None) -> int:
    ap = cli.ArgumentParser(prog="python -m bench.hashgrid")
    ap.add_argument("--n", type=cli.number(int, lo=1), default=1 << 18, help="samples per call")
    ap.add_argument("--repeats", type=cli.number(int, lo=1), default=3)
    ap.add_argument("--config", default="cpu", choices=["cpu", "paper"])
    a = ap.parse_args(argv)
    tune_allocator()
    t0 = time.perf_counter()
    if native() is None:
        from hero.nerf import hashgrid

        print(f"native kernel unavailable: {hashgrid._native_error}")
        return 1
    build_s = time.perf_counter() - t0
    c = preset(a.config)
    torch.manual_seed(0)
    g = HashGrid(c["levels"], c["features"], c["log2T"], c["n_min"], c["n_max_per_bound"] * BOUND)
    with torch.no_grad():
        g.embeddings.uniform_(-1, 1)
    x = torch.rand(a.n, 3)
    go = torch.randn(a.n, g.output_dim)

    # agreement
    with torch.no_grad():
        out_n, out_r = g(x), encode_reference(x, g.embeddings, g.params)
    gn = fwd_bwd_native(g, x, go).clone()
    gr = fwd_bwd_reference(g, x, go).clone()
    err_fwd = float((out_n - out_r).abs().max())
    err_grad = float((gn - gr).abs().max())

    # timing, interleaved so that both see the same machine load
    tn, tr = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        fwd_bwd_native(g, x, go)
        tn.append(time.perf_counter() - t)
        t = time.perf_counter()
        fwd_bwd_reference(g, x, go)
        tr.append(time.perf_counter() - t)
    mn, mr = statistics.median(tn), statistics.median(tr)
    print(f"hash grid {a.config}: L={c['levels']} F={c['features']} log2T={c['log2T']} N_min={c['n_min']} "
          f"N_max={c['n_max_per_bound'] * BOUND:g}; {a.n} samples; threads={torch.get_num_threads()}; "
          f"native kernel ready in {build_s:.1f} s")
    print(f"{'implementation':<22} {'fwd+bwd ms':>11} {'Msamples/s':>11}")
    print(f"{'pure PyTorch':<22} {mr * 1e3:11.1f} {a.n / mr / 1e6:11.3f}")
    print(f"{'native C++ (OpenMP)':<22} {mn * 1e3:11.1f} {a.n / mn / 1e6:11.3f}")
    print(f"max |diff|: forward {err_fwd:.3g}, table gradient {err_grad:.3g}")
    print(f"speedup={mr / mn:.1f} max_abs_err={max(err_fwd, err_grad):.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
