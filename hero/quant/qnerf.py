"""The NeRF quantized the way the accelerator computes it (docs/quant.md).

QuantizedNeRF(model, policy, ranges) holds every integer the hardware needs: per-level tables at
b_l bits with their HEU registers, per-layer weights at b bits with one scale per output channel
(rounded by GPTQ on calibration inputs, or to nearest), and per-channel requantization (multiplier,
shift, fused ReLU). Two forward paths use the same integers:

- `forward_fake`: float and differentiable (straight-through rounding), for fast PSNR and QAT;
- `forward_int`: the exact integer formats of the RTL through hero.intarith: hash_encode (the HEU's
  arithmetic) and linear_layer (the MLP engine's bit-serial MAC and requantizer).

Per-input-channel scales (the colour net's input joins geometry features and SH values, and every
layer's inputs carry the previous layer's per-channel scales) are folded into the weights before
they are quantized, so the accumulator of output channel c has the one scale s_w[c].
What stays in float, on the host: the density activation trunc_exp(acc * s_w) and the colour
sigmoid(acc * s_w) of the last layers (from the engine's raw accumulators), the SH encoding of view
directions (quantized on the host to the colour net's input format), and volume rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from hero import intarith as ia
from hero.nerf.dataflow import FIELD_LAYERS, GEO_FIRST, GEO_LAYER, HOST_LAYERS, SH_LAYER, run_field
from hero.nerf.model import sh_encode, trunc_exp

from .export import QLayer, QuantizedExport, frozen
from .kmeans import assign, kmeans_1d
from .policy import Policy

round_half_up = ia.round_half_up

#: the activation range (a Ranges.inputs key) that each layer's requantizer maps its output onto
REQUANT_RANGES = {"density.fc0": "density.fc1", "density.fc1": "color.fc0.geo", "color.fc0": "color.fc1",
                  "color.fc1": "color.fc2"}


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """q in the forward pass, the gradient of x in the backward pass."""
    return x + (q - x).detach()


def symmetric_scale(x: torch.Tensor, bits: int) -> float:
    """The max-abs scale: no value is clipped."""
    return max(float(x.detach().abs().max()), 1e-12) / ((1 << (bits - 1)) - 1)


#: clip ratios (of max |x|) that mse_scale tries, coarse to fine near 1
CLIP_RATIOS = torch.linspace(0.2, 1.0, 41, dtype=torch.float64)
MSE_SAMPLE = 1 << 18  # values of a large tensor that mse_scale looks at (a fixed random subset)


_MEMO: dict[tuple, object] = {}  # memo of the clipping searches and GPTQ, keyed by the tensors' contents


def _memo(key: tuple, compute):
    """The search keeps no state: the same values and bits give the same scale and integers (the
    search and QAT re-quantize unchanged tables and weights many times)."""
    if key not in _MEMO:
        if len(_MEMO) > 4096:
            _MEMO.clear()
        _MEMO[key] = compute()
    return _MEMO[key]


def _content(t: torch.Tensor) -> tuple:
    a = t.detach().cpu().contiguous().numpy()
    return a.shape, str(a.dtype), hash(a.tobytes())


def mse_scale(x: torch.Tensor, bits: int) -> float:
    """The clipping scale of least squared error (memoized; see _mse_scale)."""
    return _memo(("mse", bits, _content(x)), lambda: _mse_scale(x, bits))


def _mse_scale(x: torch.Tensor, bits: int) -> float:
    """The symmetric scale that minimises the squared quantization error, clipping included.

    At low bit widths the max-abs scale wastes most levels on a few outliers (hash tables and
    weights are heavy-tailed); trading a little clipping for finer steps lowers the error.
    """
    v = x.detach().flatten().double()
    if v.numel() > MSE_SAMPLE:
        v = v[torch.randint(0, v.numel(), (MSE_SAMPLE,), generator=torch.Generator().manual_seed(0))]
    qmax = (1 << (bits - 1)) - 1
    amax = max(float(v.abs().max()), 1e-12)
    scales = CLIP_RATIOS * amax / qmax
    err = torch.empty_like(scales)
    for i in range(len(scales)):  # one candidate at a time: a (41, N) temporary is 13x slower (memory)
        s = scales[i:i + 1, None]
        err[i:i + 1] = quantize_symmetric(v[None, :], bits, s).mul_(s).sub_(v[None, :]).pow_(2).sum(1)
    return float(scales[int(err.argmin())])


def output_error_scale(w: torch.Tensor, bits: int, x: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """The clipping scales of least output error (memoized; see _output_error_scale)."""
    return _memo(("output", bits, per_channel, _content(w), _content(x)),
                 lambda: _output_error_scale(w, bits, x, per_channel))


def _output_error_scale(w: torch.Tensor, bits: int, x: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """The weight scales (C,) that minimise the layer's output error ||x @ (w - Q(w))||^2 on samples x.

    w is (K, C) and x (N, K) in the units that multiply it. Each output channel's error depends on
    its own column only, so with `per_channel` each column takes its own clipping ratio of its own
    max |w|; without, one ratio of the whole matrix's max |w| serves every column. Better than the
    weights' own MSE: the inputs that carry large values are the ones whose rounding matters.
    """
    w, h = w.detach().double(), gram(x)
    qmax = (1 << (bits - 1)) - 1
    amax = (w.abs().amax(0) if per_channel else w.abs().max().expand(w.shape[1])).clamp(min=1e-12)
    best, best_err = amax / qmax, torch.full_like(amax, float("inf"))
    for r in CLIP_RATIOS.tolist():
        s = r * amax / qmax
        err = output_errors(w - quantize_symmetric(w, bits, s) * s, h)
        if not per_channel:
            err = err.sum().expand_as(err)
        better = err < best_err
        best, best_err = torch.where(better, s, best), torch.where(better, err, best_err)
    return best


def gram(x: torch.Tensor) -> torch.Tensor:
    """x^T x (K, K) in float64 of samples x (N, K): what a layer's output error depends on."""
    x = x.detach().double()
    return x.t() @ x


def output_errors(d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per output column c, ||x @ d[:, c]||^2 = d_c^T (x^T x) d_c, from the Gram matrix h = gram(x):
    K*K*C operations instead of N*K*C."""
    return (d * (h @ d)).sum(0)


def weight_scales(w: torch.Tensor, bits: int, mode: str, per_channel: bool = True) -> torch.Tensor:
    """Scales (C,) of folded weights (K, C) by their own values: `mse` (least squared error) or `max`
    (max |w|), per output column or one for the matrix."""
    cols = [w[:, c] for c in range(w.shape[1])] if per_channel else [w]
    fn = mse_scale if mode == "mse" else symmetric_scale
    s = torch.tensor([fn(col, bits) for col in cols], dtype=torch.float64)
    return s.expand(w.shape[1]).clone()


#: GPTQ's dampening: this share of the mean diagonal is added to the Hessian's diagonal
GPTQ_DAMP = 0.01
ROUNDINGS = ("gptq", "nearest")  # weights' integers: GPTQ (error feedback) or round to nearest
#: names the default PTQ method (a search's scores are only comparable under the same one)
QUANTIZER = "channel-output-scales+gptq/1+rendering-importance/1+sh-step/1"
GRANULARITIES = ("channel", "layer")  # weight scales: one per output channel, or one per layer
#: steps of the SH input (multiples of range / levels) that the colour net's first layer tries
SH_STEPS = (1.0, 2.0, 4.0, 8.0)


def gptq_round(w: torch.Tensor, bits: int, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The weights' integers at `scale` (C,), chosen by GPTQ (memoized; see _gptq_round)."""
    key = ("gptq", bits, _content(torch.as_tensor(scale)), _content(w), _content(x))
    return _memo(key, lambda: _gptq_round(w, bits, scale, x).to(torch.int8)).long()  # int8: a small memo


def _gptq_round(w: torch.Tensor, bits: int, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """GPTQ (Frantar et al., 2023) on one layer: y = x @ w, w (K, C), x (N, K) calibration inputs,
    scale (C,) per output column.

    Rounds the input rows one at a time and moves each row's rounding error onto the rows not yet
    rounded through the inverse Hessian of ||x @ (w - w_q)||^2, so later roundings cancel earlier
    ones. Same scale and format as rounding to nearest; only the choice of integer changes (int64
    in the symmetric range of `bits`). Each output column is rounded on its own, and keeps GPTQ's
    integers only where they lower that column's output error (the error feedback can push weights
    into the range the column's clipping scale cuts off); elsewhere it rounds to nearest.
    """
    w, scale = w.detach().double(), torch.as_tensor(scale, dtype=torch.float64)
    w0, w = w, w.clone()
    h0 = gram(x)
    h = h0.clone()
    diag = torch.diagonal(h)
    dead = diag == 0  # inputs never active in calibration: nothing to compensate, round to nearest
    h[dead, dead] = 1.0
    h += GPTQ_DAMP * float(diag.mean()) * torch.eye(len(h), dtype=h.dtype)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.empty_like(w)
    for k in range(len(w)):
        q[k] = quantize_symmetric(w[k], bits, scale)
        err = (w[k] - q[k] * scale) / u[k, k]
        w[k + 1:] -= u[k, k + 1:, None] * err[None, :]
    nearest = quantize_symmetric(w0, bits, scale)
    out_err = [output_errors(w0 - v * scale, h0) for v in (q, nearest)]
    return torch.where((out_err[0] <= out_err[1])[None, :], q, nearest).long()


SCALES = ("output", "mse", "max")  # weights: output error, own MSE, max-abs; tables: MSE, MSE, max-abs


def quantize_symmetric(x: torch.Tensor, bits: int, scale: float | torch.Tensor) -> torch.Tensor:
    """Integers in the symmetric range +-(2**(bits-1) - 1) (round half to even), as float; a
    tensor `scale` broadcasts over x's last axis (per output column)."""
    qmax = (1 << (bits - 1)) - 1
    return torch.clamp(torch.round(x / scale), -qmax, qmax)


@dataclass
class Ranges:
    """Activation ranges calibrated on training samples (max |x|, or a high quantile)."""

    encoding: float
    inputs: dict[str, float]  # per layer input; color.fc0 has 'color.fc0.geo' and 'color.fc0.sh'
    samples: dict[str, torch.Tensor] | None = None  # a few float inputs of every layer (for weight scales)


@torch.no_grad()
def calibrate_ranges(model, positions: torch.Tensor, directions: torch.Tensor, quantile: float = 0.9999,
                     n_samples: int = 4096, importance: dict[str, torch.Tensor] | None = None) -> Ranges:
    """Run the float model on training samples; record each quantized activation's range (over all
    samples), and `n_samples` of every layer's inputs for the weights' scales and GPTQ: drawn with
    replacement in proportion to `importance[net]` (net 'density' or 'color', one weight per
    sample; hero.quant.calib.rendering_importance), or without it, uniformly at random."""

    def r(t: torch.Tensor) -> float:
        t = t.detach().abs().flatten().float()
        if t.numel() > 1 << 20:
            t = t[torch.randint(0, t.numel(), (1 << 20,), generator=torch.Generator().manual_seed(0))]
        return max(float(torch.quantile(t, quantile)) if quantile < 1 else float(t.max()), 1e-6)

    e = model.grid(model.normalize(positions))
    sh = sh_encode(directions)
    inputs, raw = run_field(e, sh, lambda n, x: model.unit(n)(x),
                            lambda n, y: y if n == GEO_LAYER else torch.relu(y),
                            lambda s: s, lambda g, s: torch.cat([g, s], -1))

    def pick(net: str, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if importance is None:
            return torch.randperm(len(e), generator=g)[:n_samples]
        return torch.multinomial(importance[net].double(), n_samples, replacement=True, generator=g)

    sel = {"density": pick("density", 0), "color": pick("color", 1)}
    return Ranges(r(e), {"density.fc1": r(inputs["density.fc1"]), "color.fc0.geo": r(raw[GEO_LAYER][:, GEO_FIRST:]),
                         "color.fc0.sh": r(sh), "color.fc1": r(inputs["color.fc1"]),
                         "color.fc2": r(inputs["color.fc2"])},
                  {k: v[sel[k.split(".")[0]]].float().clone() for k, v in inputs.items()})


class QuantizedNeRF:
    def __init__(self, model, policy: Policy, ranges: Ranges, fuse_relu: bool = True, word_bits: int = ia.WORD_BITS,
                 tables: str = "uniform", scales: str = "output", rounding: str = "gptq",
                 granularity: str = "channel", sh_steps: tuple[float, ...] = SH_STEPS):
        if tables not in ("uniform", "kmeans"):
            raise ValueError(f"tables must be 'uniform' or 'kmeans', got {tables!r}")
        if scales not in SCALES:
            raise ValueError(f"scales must be one of {', '.join(SCALES)}, got {scales!r}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
        if not sh_steps or any(not k >= 1.0 for k in sh_steps):
            raise ValueError(f"sh_steps must be multiples >= 1 of the SH range step, got {sh_steps!r}")
        self.scale_mode, self.rounding, self.granularity, self.sh_steps = scales, rounding, granularity, sh_steps
        self.scale_of = symmetric_scale if scales == "max" else mse_scale
        self.model, self.policy, self.ranges = model, policy, ranges
        self.fuse_relu, self.word_bits, self.table_mode = fuse_relu, word_bits, tables
        self.grid = model.grid
        self.range_log_gain: dict[str, torch.Tensor] | None = None  # learn_ranges()
        self.refresh()

    def learn_ranges(self) -> list[torch.Tensor]:
        """Make the requantizers' output ranges trainable (QAT); returns the parameters to optimize.

        Each requantizer's output step is multiplied by exp(g) of a log-gain g per layer, which the
        fake-quant path trains as LSQ does (Esser et al., 2020): straight-through rounding, with the
        step's gradient from the rounding error inside the range and from the clipped values outside
        (their own gradient is zero there). fold_ranges() moves the gains into the calibrated ranges
        and re-derives the integers; the integer path and the export see the ranges only after it."""
        if self.range_log_gain is None:
            self.range_log_gain = {n: torch.zeros((), dtype=torch.float64, requires_grad=True) for n in REQUANT_RANGES}
        return list(self.range_log_gain.values())

    @torch.no_grad()
    def fold_ranges(self, tables: bool = True) -> None:
        """Multiply the learned gains into the activation ranges (a new Ranges; the caller's is left as
        it was), reset them to 1, and refresh(tables)."""
        if self.range_log_gain:
            inputs = dict(self.ranges.inputs)
            for name, g in self.range_log_gain.items():
                inputs[REQUANT_RANGES[name]] *= float(torch.exp(g))
                g.zero_()
            self.ranges = replace(self.ranges, inputs=inputs)
        self.refresh(tables)

    # -- quantization of the current float parameters ------------------------------------------------

    def refresh(self, tables: bool = True) -> None:
        """(Re)derive every integer and scale from the model's current float parameters; with
        `tables=False`, the layers' only (the tables keep their scales, codebooks and HEU registers:
        their clipping search is most of the time a refresh takes)."""
        self._artifact = None
        if not tables and hasattr(self, "levels"):
            self.layers = self._quantize_layers()
            return
        g, pol = self.grid, self.policy
        self.level_names = [f"grid.level{p['level']:02d}" for p in g.params]
        self.table_bits = [pol.tables[n] for n in self.level_names]
        self.table_scale = [self.scale_of(g.table(i), b) for i, b in enumerate(self.table_bits)]
        self.codebooks = [kmeans_1d(g.table(i), 1 << b)[0] for i, b in enumerate(self.table_bits)] \
            if self.table_mode == "kmeans" else None
        self.enc_scale = self.ranges.encoding / ia.HASH_OUT_FORMAT.max
        self.levels = ia.hash_levels(g.log2T, [p["scale"] for p in g.params], self.table_bits, self.table_scale,
                                     self.enc_scale, g.features, self.word_bits)
        self.table_words = ia.hash_table_words(self.levels, g.features, self.word_bits)
        # Every level's requantization ends on its own effective scale; the common s8 scale is the
        # calibrated one, and the per-level deviation (< 2**-15 relative) is part of the HEU's error.
        self.layers = self._quantize_layers()

    def _act(self, name: str) -> int:
        return self.policy.activations[name]

    def _requant_to(self, acc_scale: torch.Tensor, next_name: str, relu: bool, range_: float):
        """Per-channel requant to the next layer's input, u(a) with the ReLU fused or s(a), and the
        effective output scale of each channel."""
        a = self._act(next_name)
        levels = (1 << a) - 1 if relu else (1 << (a - 1)) - 1
        rq = ia.Requant.from_scale((acc_scale / (range_ / levels)).numpy(), relu=relu, out_bits=a)
        return rq, acc_scale / torch.from_numpy(rq.scale)

    def _weight_int(self, name: str, w_folded: torch.Tensor, bits: int, in_scale: torch.Tensor):
        """(scales (C,), integers, offset from round-to-nearest) of one layer's folded weights."""
        x = (self.ranges.samples or {}).get(name)
        x = None if x is None else x.double() / in_scale[None, :]  # x in input LSBs
        per_channel = self.granularity == "channel"
        if self.scale_mode == "output" and x is not None:
            scale = output_error_scale(w_folded, bits, x, per_channel)
        else:
            scale = weight_scales(w_folded, bits, "max" if self.scale_mode == "max" else "mse", per_channel)
        nearest = quantize_symmetric(w_folded, bits, scale).long()
        if self.rounding == "nearest" or x is None:
            return scale, nearest, None
        w_int = gptq_round(w_folded, bits, scale, x)
        return scale, w_int, w_int - nearest

    def _color_input(self, geo_scale: torch.Tensor):
        """The colour net's first layer: input scales (geometry features from density.fc1's requant,
        then the SH values) and (scales, integers, offsets) of its weights.

        The SH step is free (the host quantizes the SH values), and it sets how the folded weights'
        rows compare: the SH rows are several times smaller than the geometry rows, and with one
        scale per output channel they would round to a few levels. Each of `sh_steps` (multiples of
        range / levels) is tried; the one of least output error on the calibration inputs wins."""
        lin, a = self.model.color.fc0, self._act("color.fc0")
        fmt = ia.IntFormat(a, True)
        base = self.ranges.inputs["color.fc0.sh"] / fmt.max
        x = (self.ranges.samples or {}).get("color.fc0")
        y = None if x is None else x.double() @ lin.weight.detach().double().t()  # the float outputs
        best = None
        for k in self.sh_steps if x is not None else (1.0,):
            in_scale = torch.cat([geo_scale, torch.full((lin.in_features - len(geo_scale),), base * k,
                                                        dtype=torch.float64)])
            w_folded = lin.weight.detach().double().t() * in_scale[:, None]
            q = self._weight_int("color.fc0", w_folded, self.policy.weights["color.fc0"], in_scale)
            if x is None:
                return in_scale, q
            xq = torch.clamp(round_half_up(x.double() / in_scale), fmt.min, fmt.max)
            err = float((y - xq @ (q[1] * q[0])).pow(2).sum())
            if best is None or err < best[0]:
                best = (err, in_scale, q)
        return best[1], best[2]

    def _quantize_layers(self) -> list[QLayer]:
        m, r = self.model, self.ranges.inputs
        names = FIELD_LAYERS
        layers: list[QLayer] = []
        in_scale = torch.full((m.unit(names[0]).in_features,), self.enc_scale, dtype=torch.float64)
        in_fmt = ia.HASH_OUT_FORMAT
        for idx, name in enumerate(names):
            lin = m.unit(name)
            bits = self.policy.weights[name]
            if name == SH_LAYER:
                in_scale, (w_scale, w_int, w_offset) = self._color_input(layers[-1].out_scale)
                in_fmt = ia.IntFormat(self._act(name), True)
                self.sh_scale = float(in_scale[-1])
            else:
                w_folded = lin.weight.detach().double().t() * in_scale[:, None]  # (K, C)
                w_scale, w_int, w_offset = self._weight_int(name, w_folded, bits, in_scale)
            rq, out_scale, relu_after = None, w_scale, False
            if name == GEO_LAYER:  # output 0 to the host; geometry features: signed, no activation
                rq, out_scale = self._requant_to(w_scale[GEO_FIRST:], SH_LAYER, False, r["color.fc0.geo"])
            elif name not in HOST_LAYERS:
                nxt = names[idx + 1]
                rq, out_scale = self._requant_to(w_scale, nxt, self.fuse_relu, r[nxt])
                relu_after = not self.fuse_relu
            layers.append(QLayer(name, bits, in_fmt, in_scale, w_scale, w_int, rq, out_scale, relu_after, w_offset))
            if rq is not None and name != GEO_LAYER:
                in_scale, in_fmt = out_scale, rq.out_format
        return layers

    # -- the integer path: exactly the hardware ------------------------------------------------------

    def tables_int(self) -> list[torch.Tensor]:
        if self.codebooks is not None:
            raise NotImplementedError("k-means tables have no integer path: the HEU has no codebook stage "
                                      "(docs/quant.md); use uniform tables for the hardware")
        return [quantize_symmetric(self.grid.table(i).detach(), b, s).long()
                for i, (b, s) in enumerate(zip(self.table_bits, self.table_scale, strict=True))]

    def frozen(self) -> QuantizedExport:
        """The artifact as of the last refresh (hero.quant.export): the integer path computes on it."""
        if self._artifact is None:
            self._artifact = frozen(self)
        return self._artifact

    def encode_int(self, x01: torch.Tensor) -> torch.Tensor:
        """HEU output, (N, L*F) s8, from positions in [0, 1)^3."""
        return self.frozen().encode_int(x01)

    def sh_int(self, sh: torch.Tensor) -> torch.Tensor:
        """The host's SH values (N, 16) as the colour net's integer inputs."""
        return self.frozen().sh_int(sh)

    def trace_int(self, positions: torch.Tensor, sh: torch.Tensor) -> dict:
        """Every integer on the way: 'encoding' (HEU output), and per layer 'in.<name>' and 'acc.<name>'."""
        return self.frozen().trace_int(positions, sh)

    def forward_int(self, positions: torch.Tensor, sh: torch.Tensor):
        """Density [N] and colour [N, 3] from positions and SH-encoded directions, in the RTL's integers."""
        return self.frozen().forward_int(positions, sh)

    def host_outputs(self, density_acc: torch.Tensor, color_acc: torch.Tensor):
        """Density [N] and colour [N, 3] from the raw accumulators that leave the engine: the host's
        trunc_exp and sigmoid."""
        return self.frozen().host_outputs(density_acc, color_acc)

    # -- the fake-quant path: float, differentiable ----------------------------------------------------

    def _fq_weight(self, q: QLayer, lin) -> torch.Tensor:
        """Quantized folded weights back in the input's real units: (K, C), straight-through.

        GPTQ's choices are kept as offsets from round-to-nearest, so the integers equal w_int at
        every refresh and follow the float weights between refreshes (QAT)."""
        w_folded = lin.weight.t().double() * q.in_scale[:, None]
        w_int = quantize_symmetric(w_folded, q.bits, q.w_scale)
        if q.w_offset is not None:
            qmax = (1 << (q.bits - 1)) - 1
            w_int = torch.clamp(w_int + q.w_offset, -qmax, qmax)
        w_q = ste(w_folded, w_int * q.w_scale)
        return (w_q / q.in_scale[:, None]).float()

    def _fq_act(self, y: torch.Tensor, q: QLayer) -> torch.Tensor:
        """The requantizer on real values: y = acc * w_scale -> the next layer's input."""
        fmt = q.rq.out_format
        step = q.out_scale.to(y.dtype)
        if self.range_log_gain is None:
            v = ste(y, torch.clamp(round_half_up(y / step), fmt.min, fmt.max) * step)
        else:  # LSQ: the step (range) learns; clipped values pass no gradient to y
            step = step * torch.exp(self.range_log_gain[q.name]).to(y.dtype)
            x = y / step
            v = torch.clamp(ste(x, round_half_up(x)), fmt.min, fmt.max) * step
        return torch.relu(v) if q.relu_after else v

    def forward_fake(self, positions: torch.Tensor, sh: torch.Tensor):
        """As forward_int, in float with straight-through rounding (differentiable)."""
        m = self.model
        q = {layer.name: layer for layer in self.layers}
        tables = []
        for i, (b, s) in enumerate(zip(self.table_bits, self.table_scale, strict=True)):
            t = self.grid.table(i)
            if self.codebooks is not None:
                cb = self.codebooks[i]
                tables.append(ste(t, cb[assign(t.detach(), cb)].float()))
            else:
                tables.append(ste(t, quantize_symmetric(t, b, s) * s))
        emb = torch.cat(tables)
        e = encode_with(self.grid, m.normalize(positions), emb)
        fmt = ia.HASH_OUT_FORMAT
        e = ste(e, torch.clamp(round_half_up(e / self.enc_scale), fmt.min, fmt.max) * self.enc_scale)
        a, step = q[SH_LAYER].in_fmt, self.sh_scale
        _, raw = run_field(e, sh, lambda n, x: x @ self._fq_weight(q[n], m.unit(n)),
                           lambda n, y: self._fq_act(y, q[n]),
                           lambda s: ste(s, torch.clamp(round_half_up(s / step), a.min, a.max) * step),
                           lambda g, s: torch.cat([g, s], -1))
        return trunc_exp(raw["density.fc1"][:, 0]), torch.sigmoid(raw["color.fc2"])

    # -- size ------------------------------------------------------------------------------------------

    def size_bits(self) -> dict[str, int]:
        """Model size: tables and weights at their bit widths, plus scales and requant registers."""
        tables = sum(p["entries"] * p["features"] * b for p, b in zip(self.grid.params, self.table_bits, strict=True))
        weights = sum(int(q.w_int.numel()) * q.bits for q in self.layers)
        # Per level: scale register (25) + requant (16 + 6); per output channel: requant (16 + 6) + float
        # scale (32); the host's encoding and SH scales.
        channels = sum(len(q.w_scale) for q in self.layers)
        requant = ia.REQ_MULT_BITS + ia.REQ_SHIFT_BITS
        scales = len(self.levels) * (ia.HASH_SCALE_BITS + requant) + channels * (requant + 32) + 2 * 32
        codebooks = 0 if self.codebooks is None else 32 * sum(len(cb) for cb in self.codebooks)
        total = tables + weights + scales + codebooks
        return {"tables": tables, "weights": weights, "scales": scales, "codebooks": codebooks, "total": total}


class FakeQuantField:
    """A quantized model as the renderer sees a field: forward_sh(positions, sh) -> (sigma, rgb)."""

    def __init__(self, qn: QuantizedNeRF, integer: bool = False):
        self.qn, self.integer = qn, integer
        self.aabb = qn.model.aabb

    def forward_sh(self, positions: torch.Tensor, sh: torch.Tensor):
        return (self.qn.forward_int if self.integer else self.qn.forward_fake)(positions, sh)

    def eval(self):
        self.qn.model.eval()
        return self


def IntegerField(qn: QuantizedNeRF) -> FakeQuantField:  # noqa: N802 - reads as a type at call sites
    return FakeQuantField(qn, integer=True)


def fp32_size_bits(model) -> int:
    return 32 * sum(info["params"] for _, _, info in model.quant_units())


def encode_with(grid, x01: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """The grid's float encoding with other (e.g. quantized) embeddings; native kernel on CPU."""
    from hero.nerf import hashgrid

    x01 = x01.float()
    if grid.native_ok(x01):
        return hashgrid._NativeEncode.apply(x01.contiguous(), embeddings.float().contiguous(),
                                            (grid, torch.get_num_threads()))
    return hashgrid.encode_reference(x01, embeddings.float(), grid.params)
