"""Core: the HEU and the MLP engine joined into the accelerator of the NeRF's field (docs/core.md).

Samples (position, quantized SH values) go in; per sample the raw accumulators of density.fc1's
output 0 and of color.fc2's outputs come out. In between: the HEU, an activation file that turns
the HEU's per-point features (rows) into the engine's operand beats (columns) and holds every
layer's activations, a weight memory of bit planes, per-channel requantization registers, and a
sequencer running the engine through the five layers over a batch of up to R samples. Two batches
are in the core at once: the HEU encodes one while the engine runs the other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hero import intarith as ia
from hero.nerf.dataflow import FIELD_LAYERS, GEO_FIRST
from sim_py.core import column_folds, weight_words

from .bitserial_pe import check_pe_params
from .heu import HEU, check_heu_params, level_record, point_layout
from .heu import config_layout as heu_config_layout
from .mlp_engine import COUNTER_BITS, K_BITS, MLPEngine, TileConfig, layer_tiles
from .params import COLS, FEATURES, LEVELS, LOG2T, ROWS, at_most, check_int, rejecting
from .pe_array import check_array_params


class Target(enum.IntEnum):
    """What a `config` record writes."""

    HEU_LEVEL = 0  # data: one rtl.heu config record (the level is inside it)
    HEU_TABLE = 1  # addr: table memory word, data: the word
    WEIGHT = 2  # addr: weight memory word, data: one C-bit weight plane
    LAYER = 3  # addr: layer index, data: layer_layout
    REQUANT = 4  # addr: fold * 2**col_bits + column, data: requant_layout


@dataclass(frozen=True)
class CoreLayer:
    """One layer as the sequencer runs it: K inputs from lanes in_lane.., C_out outputs, each to an
    activation lane or to a raw output slot of the host's record."""

    name: str
    k: int
    c_out: int
    in_lane: int
    out_lane: tuple[int | None, ...]  # per output channel: activation lane, or None
    out_raw: tuple[int | None, ...]  # per output channel: raw output slot, or None


BANKS = 2  # batches in the core at once: one encoded by the HEU while the engine runs the other (one bit)


@dataclass(frozen=True)
class Net:
    """The field's shape: K0 = L*F encoding lanes, hidden width, geometry features, SH lanes, colours.

    Activation lanes, per bank b (a batch's own): features [b*K0, (b+1)*K0), and geometry then SH
    (color.fc0's input) from Y_b = 2*K0 + b*(G+S); shared by the batches: hidden ping [A, A+H) and
    pong [A+H, A+2H), A = 2*K0 + 2*(G+S)."""

    enc: int
    hidden: int
    geo: int
    sh: int
    colors: int = 3

    def enc_lane(self, bank: int) -> int:
        return bank * self.enc

    def geo_lane(self, bank: int) -> int:
        return BANKS * self.enc + bank * (self.geo + self.sh)

    def sh_lane(self, bank: int) -> int:
        return self.geo_lane(bank) + self.geo

    @property
    def ping(self) -> int:
        return self.geo_lane(BANKS)

    @property
    def lanes(self) -> int:
        return self.ping + 2 * self.hidden

    @property
    def raw_outputs(self) -> int:
        return 1 + self.colors  # density, then the colours

    def layers(self, bank: int = 0) -> list[CoreLayer]:
        """The five layers as they run on `bank`'s batch."""
        h, g, ping = self.hidden, self.geo, self.ping
        pong, geo = ping + h, self.geo_lane(bank)
        none = (None,)
        d0, d1, c0, c1, c2 = FIELD_LAYERS  # hero.nerf.dataflow: d1's outputs from GEO_FIRST on feed c0
        return [
            CoreLayer(d0, self.enc, h, self.enc_lane(bank), tuple(range(ping, ping + h)), none * h),
            CoreLayer(d1, h, GEO_FIRST + g, ping, none * GEO_FIRST + tuple(range(geo, geo + g)),
                      (0,) + none * (GEO_FIRST - 1 + g)),
            CoreLayer(c0, g + self.sh, h, geo, tuple(range(pong, pong + h)), none * h),
            CoreLayer(c1, h, h, pong, tuple(range(ping, ping + h)), none * h),
            CoreLayer(c2, h, self.colors, ping, none * self.colors, tuple(range(1, 1 + self.colors))),
        ]


def folds(layer: CoreLayer, cols: int) -> int:
    return column_folds(layer.c_out, cols)


def layer_words(layer: CoreLayer, wbits: int, cols: int) -> int:
    """Weight memory words of a layer (sim_py.core.weight_words)."""
    return weight_words(layer.k, layer.c_out, wbits, cols)


def layer_layout(max_wbits: int, weight_depth: int) -> data.StructLayout:
    """A layer's registers: weight width, input signedness, the requantizer's ReLU and width, and
    its first weight word."""
    return data.StructLayout({
        "wbits": range(max_wbits + 1),
        "act_signed": 1,
        "relu": 1,
        "out_bits": range(ia.ACT_BITS + 1),
        "wbase": range(weight_depth),
    })


def requant_layout() -> data.StructLayout:
    return data.StructLayout({"mult": ia.REQ_MULT_BITS, "shift": ia.REQ_SHIFT_BITS})


def sample_layout(net: Net) -> data.StructLayout:
    """One sample: u16 position (rtl.heu point), its SH values as s8 lanes, and `last` ending the batch."""
    return data.StructLayout({"pos": point_layout(), "sh": data.ArrayLayout(ia.ACT_BITS, net.sh), "last": 1})


def output_layout(net: Net, acc_bits: int) -> data.StructLayout:
    """One sample's raw accumulators: density.fc1 output 0, then color.fc2's outputs."""
    return data.StructLayout({"density": signed(acc_bits), "color": data.ArrayLayout(signed(acc_bits), net.colors)})


@dataclass(frozen=True)
class CoreParams:
    """The core's build parameters, and what follows from them: the network's lane map, the record
    layouts, and the encoders of the host side (config records, sample beats)."""

    levels: int = LEVELS
    features: int = FEATURES
    log2t: int = LOG2T
    word_bits: int = ia.WORD_BITS
    depth: int | None = None  # table memory words (default: every level at 8 bits)
    hidden: int = 64
    geo: int = 15
    sh: int = 16
    colors: int = 3
    rows: int = ROWS
    cols: int = COLS
    max_wbits: int = ia.MAX_WBITS
    acc_bits: int = ia.ACC_BITS
    weight_depth: int | None = None  # weight memory words (default: every layer at max_wbits)

    def __post_init__(self):
        depth = check_heu_params(self.levels, self.features, self.log2t, self.word_bits, self.depth)
        check_array_params(self.rows, self.cols)
        check_pe_params(ia.ACT_BITS, self.max_wbits, self.acc_bits)
        check_int("hidden", self.hidden, 1, 256)
        check_int("geo", self.geo, 1, 256)
        check_int("sh", self.sh, 1, 64)
        check_int("colors", self.colors, 1, 16)
        object.__setattr__(self, "depth", depth)
        if self.weight_depth is None:
            full = sum(layer_words(x, self.max_wbits, self.cols) for x in self.layers)
            object.__setattr__(self, "weight_depth", full)
        check_int("weight_depth", self.weight_depth, 2, 1 << 20)

    @property
    def net(self) -> Net:
        return Net(self.levels * self.features, self.hidden, self.geo, self.sh, self.colors)

    @property
    def layers(self) -> list[CoreLayer]:
        return self.net.layers()

    @property
    def fold_base(self) -> list[int]:
        """Each layer's first requant word (one per column fold), and the total."""
        return [int(v) for v in np.cumsum([0] + [folds(x, self.cols) for x in self.layers])]

    @property
    def col_bits(self) -> int:
        return max(1, (self.cols - 1).bit_length())

    @property
    def heu_config_layout(self) -> data.StructLayout:
        return heu_config_layout(self.levels, self.log2t, self.depth)

    @property
    def layer_layout(self) -> data.StructLayout:
        return layer_layout(self.max_wbits, self.weight_depth)

    @property
    def config_layout(self) -> data.StructLayout:
        addr_bits = max((self.depth - 1).bit_length(), (self.weight_depth - 1).bit_length(),
                        max(1, (self.fold_base[-1] - 1).bit_length()) + self.col_bits, 3)
        data_bits = max(self.heu_config_layout.size, self.word_bits, self.cols, self.layer_layout.size,
                        requant_layout().size)
        return data.StructLayout({"target": 3, "addr": addr_bits, "data": data_bits})

    def record(self, target: Target, addr: int, value: int) -> int:
        """One raw `config` payload."""
        return self.config_layout.const({"target": int(target), "addr": addr, "data": int(value)}).as_bits()

    def layer_record(self, tile: TileConfig, wbase: int, **fields) -> int:
        """A LAYER record's data: the configuration its layer's tiles share (weight width, input
        signedness, the requantizer's ReLU and width) and its first weight word; `fields` replace
        layer_layout fields (a testbench's refused records)."""
        return self.layer_layout.const({"wbits": tile.wbits, "act_signed": int(tile.act_signed),
                                        "relu": int(tile.rq.relu), "out_bits": tile.rq.out_bits,
                                        "wbase": wbase, **fields}).as_bits()

    def requant_addr(self, fold: int, col: int) -> int:
        """A REQUANT record's address: column `col` of fold `fold` (counted over every layer, fold_base)."""
        return (fold << self.col_bits) | col

    def config_records(self, model) -> list[int]:
        """Every record that loads `model` (a hero.quant.export.QuantizedExport), as raw payloads:
        level registers, tables, weights, layer registers, requantization. Raises ValueError when
        the model does not fit this core."""
        g = model.grid
        for key in ("levels", "features", "log2t", "word_bits"):
            if g[key] != getattr(self, key):
                raise ValueError(f"model {key}={g[key]}, the core's is {getattr(self, key)}")
        if len(model.table_memory) > self.depth:
            raise ValueError(f"model tables take {len(model.table_memory)} words, the core has {self.depth}")
        rec = self.record
        out = [rec(Target.HEU_LEVEL, 0, self.heu_config_layout.const(level_record(i, lv)).as_bits())
               for i, lv in enumerate(model.levels)]
        out += [rec(Target.HEU_TABLE, a, w) for a, w in enumerate(model.table_memory.tolist())]
        wbase = 0
        for idx, (shape, layer) in enumerate(zip(self.layers, model.layers, strict=True)):
            if (layer.name, *layer.w_int.shape) != (shape.name, shape.k, shape.c_out):
                raise ValueError(f"model layer {layer.name} {tuple(layer.w_int.shape)} is not the core's "
                                 f"{shape.name} ({shape.k}, {shape.c_out})")
            if layer.relu_after:
                raise ValueError(f"{layer.name}: an unfused ReLU after the requantizer is not in the core")
            tiles = layer_tiles(layer, self.cols)
            words = [int(word) for t in tiles for word in t.plane_words().ravel()]
            if wbase + len(words) > self.weight_depth:
                raise ValueError(f"weights take more than the core's {self.weight_depth} words")
            out += [rec(Target.WEIGHT, wbase + i, word) for i, word in enumerate(words)]
            out.append(rec(Target.LAYER, idx, self.layer_record(tiles[0], wbase)))
            for f, t in enumerate(tiles):
                for c, (mult, shift) in enumerate(zip(*t.rq_columns(), strict=True)):
                    out.append(rec(Target.REQUANT, self.requant_addr(self.fold_base[idx] + f, c),
                                   requant_layout().const({"mult": mult, "shift": shift}).as_bits()))
            wbase += len(words)
        return out

    def sample_beats(self, positions: np.ndarray, sh: np.ndarray, sizes: list[int] | None = None) -> list[int]:
        """Raw `sample` payloads of u16 positions (N, 3) and SH integers (N, S) in the colour net's
        input format, in batches of `sizes` (default: R each), each batch's last sample flagged."""
        n = len(positions)
        sizes = sizes or [min(self.rows, n - i) for i in range(0, n, self.rows)]
        if sum(sizes) != n or not all(1 <= b <= self.rows for b in sizes):
            raise ValueError(f"batch sizes {sizes} must be 1..{self.rows} each and add up to {n}")
        ends = set(np.cumsum(sizes) - 1)
        lay, sh_raw = sample_layout(self.net), ia.IntFormat(ia.ACT_BITS, True).encode(np.asarray(sh))
        return [lay.const({"pos": [int(v) for v in positions[i]], "sh": [int(v) for v in sh_raw[i]],
                           "last": int(i in ends)}).as_bits() for i in range(n)]


class Core(wiring.Component):
    """HEU + activation file + weight memory + MLP engine, sequenced over batches of up to R samples.

    Protocol (docs/core.md):
    - `config` takes one record {target, addr, data} per handshake, only while idle (Target).
      A refused record (unknown target, address out of range, layer record with wbits outside
      2..max_wbits or out_bits outside 2..8) writes nothing and raises `error`.
    - `sample` takes up to R samples per batch; a batch ends at R or at a sample with `last`.
    - A batch runs: HEU, then density.fc0 -> density.fc1 -> color.fc0 -> color.fc1 -> color.fc2,
      one engine tile per column fold; then `result` gives one record per sample, in order. The
      next batch is encoded into the other bank meanwhile (sim_py.core.schedule: the cycles).
    - A tile the engine refuses (a column without a requant multiplier) drops the batch: no
      results, `error` high.
    `error`: the last record was refused (by the core or, for level records, the HEU) or the last
    batch dropped; the next accepted record clears it.
    Counters (cleared by `clear` or reset): `cycles` counts cycles with a batch in progress or a
    sample taken; `stall_cycles` those with a result refused; `samples` the results sent.
    Reset clears every register, not the memories (tables, weights, requant).
    """

    def __init__(self, params: CoreParams | None = None, **kw):
        with rejecting(self):
            p = self.params = params if params is not None else CoreParams(**kw)
        super().__init__({
            "config": In(stream.Signature(p.config_layout)),
            "sample": In(stream.Signature(sample_layout(p.net))),
            "result": Out(stream.Signature(output_layout(p.net, p.acc_bits))),
            "clear": In(1),
            "busy": Out(1),
            "error": Out(1),
            "cycles": Out(COUNTER_BITS),
            "stall_cycles": Out(COUNTER_BITS),
            "samples": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        R, C, net = p.rows, p.cols, p.net
        m.submodules.heu = heu = HEU(levels=p.levels, features=p.features, log2t=p.log2t, word_bits=p.word_bits,
                                     depth=p.depth)
        m.submodules.engine = eng = MLPEngine(rows=R, cols=C, max_wbits=p.max_wbits, acc_bits=p.acc_bits)
        banked = [net.layers(b) for b in range(BANKS)]
        layers, nl = banked[0], len(banked[0])
        fold_base = p.fold_base
        n_folds = fold_base[-1]
        layer_lay = p.layer_layout
        rq_shape = data.ArrayLayout(requant_layout(), C)

        # ---- state --------------------------------------------------------------------------------
        act = [Signal(data.ArrayLayout(ia.ACT_BITS, net.lanes), name=f"act_{r}") for r in range(R)]  # row r's lanes
        raw = [[Signal(signed(p.acc_bits), name=f"raw_{r}_{s}") for s in range(net.raw_outputs)]
               for r in range(R)]
        regs = Array(Signal(layer_lay, name=f"layer_{i}") for i in range(nl))
        # Per bank: samples taken, their features written, the batch's last sample taken, encoded.
        n_in = Array(Signal(range(R + 1), name=f"n_in_{b}") for b in range(BANKS))
        n_enc = Array(Signal(range(R + 1), name=f"n_enc_{b}") for b in range(BANKS))
        in_done = Array(Signal(name=f"in_done_{b}") for b in range(BANKS))
        full = Array(Signal(name=f"full_{b}") for b in range(BANKS))
        fill_bank, enc_bank, run_bank = Signal(), Signal(), Signal()  # where samples, features, the engine go
        n_out = Signal(range(R + 1))  # results of the running batch sent
        core_error = Signal()  # the last record was refused, or the last batch dropped
        idle = Signal(init=1)  # config.ready: nothing in the core in the previous cycle

        # ---- configuration port -------------------------------------------------------------------
        cfg = self.config.payload
        take_cfg = self.config.valid & self.config.ready
        tgt = cfg.target
        col = cfg.addr[:p.col_bits]
        fold_addr = cfg.addr >> p.col_bits
        layer_rec = layer_lay(cfg.data[:layer_lay.size])
        layer_ok = ((cfg.addr < nl) & (layer_rec.wbits >= ia.MIN_WBITS) & at_most(layer_rec.wbits, p.max_wbits)
                    & (layer_rec.out_bits >= 2) & (layer_rec.out_bits <= ia.ACT_BITS))
        ok = Signal()
        with m.Switch(tgt):
            with m.Case(Target.HEU_LEVEL):
                m.d.comb += ok.eq(1)  # the HEU checks its own records
            with m.Case(Target.HEU_TABLE):
                m.d.comb += ok.eq(cfg.addr < p.depth)
            with m.Case(Target.WEIGHT):
                m.d.comb += ok.eq(cfg.addr < p.weight_depth)
            with m.Case(Target.LAYER):
                m.d.comb += ok.eq(layer_ok)
            with m.Case(Target.REQUANT):
                m.d.comb += ok.eq((fold_addr < n_folds) & (col < C))
        write = take_cfg & ok
        m.d.comb += [
            heu.config.valid.eq(take_cfg & (tgt == Target.HEU_LEVEL)),
            heu.config.payload.eq(cfg.data[:p.heu_config_layout.size]),
            heu.table.valid.eq(write & (tgt == Target.HEU_TABLE)),
            heu.table.payload.addr.eq(cfg.addr),
            heu.table.payload.data.eq(cfg.data),
        ]
        with m.If(take_cfg):
            m.d.sync += core_error.eq(~ok)
        with m.If(write & (tgt == Target.LAYER)):
            m.d.sync += regs[cfg.addr[:max(1, (nl - 1).bit_length())]].eq(layer_rec)

        wmem = memory.Memory(shape=C, depth=p.weight_depth, init=[])
        rqmem = memory.Memory(shape=rq_shape, depth=n_folds, init=[])
        m.submodules.weights, m.submodules.requant = wmem, rqmem
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        rq_wr, rq_rd = rqmem.write_port(granularity=1), rqmem.read_port(domain="comb")
        m.d.comb += [
            w_wr.addr.eq(cfg.addr), w_wr.data.eq(cfg.data), w_wr.en.eq(write & (tgt == Target.WEIGHT)),
            rq_wr.addr.eq(fold_addr),
            rq_wr.data.eq(Cat(*[cfg.data[:requant_layout().size]] * C)),
        ]
        for c in range(C):
            m.d.comb += rq_wr.en[c].eq(write & (tgt == Target.REQUANT) & (col == c))

        # ---- sample input: positions to the HEU, SH values to their lanes -------------------------
        m.d.comb += [
            heu.point.payload.eq(self.sample.payload.pos),
            heu.result.ready.eq(1),
        ]
        take_sample = self.sample.valid & self.sample.ready
        take_enc = heu.result.valid
        for b in range(BANKS):
            for r in range(R):
                with m.If(take_sample & (fill_bank == b) & (n_in[b] == r)):
                    m.d.sync += [act[r][net.sh_lane(b) + i].eq(self.sample.payload.sh[i]) for i in range(net.sh)]
                with m.If(take_enc & (enc_bank == b) & (n_enc[b] == r)):
                    m.d.sync += [act[r][net.enc_lane(b) + i].eq(heu.result.payload[i]) for i in range(net.enc)]
        # Fill: samples into fill_bank until its last one; encode: features into enc_bank until its
        # last one, which makes the bank full (the engine's to run).
        accept = ~in_done[fill_bank] & ~full[fill_bank] & heu.point.ready
        m.d.comb += [heu.point.valid.eq(self.sample.valid & ~in_done[fill_bank] & ~full[fill_bank]),
                     self.sample.ready.eq(accept)]
        with m.If(take_sample):
            m.d.sync += n_in[fill_bank].eq(n_in[fill_bank] + 1)
            with m.If(self.sample.payload.last | (n_in[fill_bank] == R - 1)):
                m.d.sync += [in_done[fill_bank].eq(1), fill_bank.eq(~fill_bank)]
        with m.If(take_enc):
            m.d.sync += n_enc[enc_bank].eq(n_enc[enc_bank] + 1)
            with m.If(in_done[enc_bank] & (n_enc[enc_bank] + 1 == n_in[enc_bank])):
                m.d.sync += [full[enc_bank].eq(1), enc_bank.eq(~enc_bank)]

        # ---- sequencer: tiles (layer, fold), back to back ------------------------------------------
        nxt_layer, cur_layer = Signal(range(nl)), Signal(range(nl))
        max_folds = max(2, *(folds(x, C) for x in layers))  # at least one bit
        nxt_fold, cur_fold = Signal(range(max_folds)), Signal(range(max_folds))
        all_started = Signal()
        started = Signal()  # a start was asserted in the previous cycle
        k_of = Array(Const(x.k, K_BITS) for x in layers)
        folds_of = Array(Const(folds(x, C) - 1, range(max_folds)) for x in layers)
        fold_base_of = Array(Const(int(b), range(n_folds + 1)) for b in fold_base[:-1])
        in_lane_of = Array(Mux(run_bank, Const(x1.in_lane, range(net.lanes)), Const(x0.in_lane, range(net.lanes)))
                           for x0, x1 in zip(*banked, strict=True))
        nreg = regs[nxt_layer]
        go = Signal()
        m.d.comb += [
            eng.k.eq(k_of[nxt_layer]),
            eng.wbits.eq(nreg.wbits),
            eng.act_signed.eq(nreg.act_signed),
            eng.rq_relu.eq(nreg.relu),
            eng.rq_out_bits.eq(nreg.out_bits),
            rq_rd.addr.eq(fold_base_of[nxt_layer] + nxt_fold),
            eng.start.eq(go),
        ]
        rq_row = rq_shape(rq_rd.data)
        for c in range(C):
            m.d.comb += [eng.rq_mult[c].eq(rq_row[c].mult), eng.rq_shift[c].eq(rq_row[c].shift)]

        # Feed: issue a beat (weight word address, activation lane) per cycle; the weight memory's
        # read and the lane column land in stage 1, which is the engine's operand. The lane and the
        # address are registers (f_lane, f_addr) that hold the next beat's: while no tile feeds they
        # are loaded with the next tile's first beat, so the activation file's read multiplexers and
        # the weight memory's address start at a register.
        s1_valid = Signal()
        s1_x = Signal(data.ArrayLayout(ia.ACT_BITS, R))
        feeding = Signal()
        f_lane = Signal(range(net.lanes))
        f_addr = Signal(range(p.weight_depth + 1))
        f_bit = Signal(range(p.max_wbits))
        f_wbits = Signal(range(p.max_wbits + 1))
        f_kleft = Signal(K_BITS)
        advance = ~s1_valid | eng.operand.ready
        issue = advance & (go | feeding)
        m.d.comb += [
            w_rd.addr.eq(f_addr), w_rd.en.eq(advance),
            eng.operand.valid.eq(s1_valid),
            eng.operand.payload.x.eq(s1_x),
            eng.operand.payload.w.eq(w_rd.data),
        ]
        with m.If(~feeding & ~go):  # the next tile's first beat
            m.d.sync += [f_lane.eq(in_lane_of[nxt_layer]), f_addr.eq(Mux(nxt_fold == 0, nreg.wbase, f_addr))]
        with m.If(advance):
            m.d.sync += s1_valid.eq(issue)
            for r in range(R):
                m.d.sync += s1_x[r].eq(act[r][f_lane])
        with m.If(issue):
            m.d.sync += f_addr.eq(f_addr + 1)
            with m.If(go):
                m.d.sync += [feeding.eq(1), f_bit.eq(1), f_kleft.eq(k_of[nxt_layer]), f_wbits.eq(nreg.wbits)]
            with m.Elif(f_bit == f_wbits - 1):
                m.d.sync += [f_bit.eq(0), f_lane.eq(f_lane + 1), f_kleft.eq(f_kleft - 1)]
                with m.If(f_kleft == 1):
                    m.d.sync += feeding.eq(0)
            with m.Else():
                m.d.sync += f_bit.eq(f_bit + 1)

        # Drain: each row's outputs to their lanes or raw slots (constant per lane, layer and fold).
        res = eng.result.payload
        m.d.comb += eng.result.ready.eq(1)
        last_tile_row = eng.result.valid & all_started & (res.row == R - 1)
        for r in range(R):
            with m.If(eng.result.valid & (res.row == r)):
                for li, layer in enumerate(layers):
                    for ch in range(layer.c_out):
                        f, c = divmod(ch, C)
                        hit = (cur_layer == li) & (cur_fold == f)
                        lanes_of = [banked[b][li].out_lane[ch] for b in range(BANKS)]
                        if lanes_of[0] is not None and len(set(lanes_of)) == 1:  # a shared lane
                            with m.If(hit):
                                m.d.sync += act[r][lanes_of[0]].eq(res.q[c])
                        elif lanes_of[0] is not None:  # the running batch's own lane
                            for b, lane in enumerate(lanes_of):
                                with m.If(hit & (run_bank == b)):
                                    m.d.sync += act[r][lane].eq(res.q[c])
                        if layer.out_raw[ch] is not None:
                            with m.If(hit):
                                m.d.sync += raw[r][layer.out_raw[ch]].eq(res.acc[c])

        # ---- batch control ------------------------------------------------------------------------
        refused = started & ~eng.busy
        m.d.sync += started.eq(go)
        out_row = Array(Cat(*raw[r]) for r in range(R))
        m.d.comb += self.result.payload.as_value().eq(out_row[n_out])
        take_out = self.result.valid & self.result.ready

        def end_batch():
            """Release the running batch's bank (never the one filling or encoding: that one is not full)."""
            m.d.sync += [n_in[run_bank].eq(0), n_enc[run_bank].eq(0), in_done[run_bank].eq(0),
                         full[run_bank].eq(0), run_bank.eq(~run_bank), n_out.eq(0), all_started.eq(0),
                         nxt_layer.eq(0), nxt_fold.eq(0), feeding.eq(0), s1_valid.eq(0),
                         # the other bank's first beat, ready for a tile started in the next cycle
                         f_lane.eq(Mux(run_bank, banked[0][0].in_lane, banked[1][0].in_lane)),
                         f_addr.eq(regs[0].wbase)]

        with m.FSM(name="batch"):
            with m.State("RUN"):
                m.d.comb += go.eq(full[run_bank] & ~eng.busy & ~all_started & ~started)
                with m.If(go):
                    m.d.sync += [cur_layer.eq(nxt_layer), cur_fold.eq(nxt_fold)]
                    with m.If(nxt_fold == folds_of[nxt_layer]):
                        m.d.sync += [nxt_fold.eq(0), nxt_layer.eq(nxt_layer + 1)]
                        with m.If(nxt_layer == nl - 1):
                            m.d.sync += all_started.eq(1)
                    with m.Else():
                        m.d.sync += nxt_fold.eq(nxt_fold + 1)
                with m.If(refused):
                    m.d.sync += core_error.eq(1)
                    end_batch()
                with m.Elif(last_tile_row):
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.result.valid.eq(1)
                with m.If(take_out):
                    m.d.sync += n_out.eq(n_out + 1)
                    with m.If(n_out + 1 == n_in[run_bank]):
                        end_batch()
                        m.next = "RUN"

        # ---- status and counters --------------------------------------------------------------------
        busy = Cat(*(n_in[b] != 0 for b in range(BANKS))).any()
        m.d.comb += [
            self.busy.eq(busy),
            self.config.ready.eq(idle),
            self.error.eq(heu.error | core_error),
        ]
        # config.ready is a register: the busy flags of every stage are an OR spread over the chip,
        # and the config port's write enables fan out to every memory. A sample taken now makes the
        # core busy in the next cycle; the core becomes ready one cycle after it goes idle.
        m.d.sync += idle.eq(~busy & ~heu.busy & ~eng.busy & ~take_sample)
        with m.If(self.clear):
            m.d.sync += [self.cycles.eq(0), self.stall_cycles.eq(0), self.samples.eq(0)]
        with m.Else():
            with m.If(busy | take_sample):
                m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(self.result.valid & ~self.result.ready):
                m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
            with m.If(take_out):
                m.d.sync += self.samples.eq(self.samples + 1)
        return m
