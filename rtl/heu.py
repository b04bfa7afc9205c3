"""HEU: the hash encoding unit, Instant-NGP's multi-resolution hash grid, one corner lookup per cycle."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hero.intarith import (
    ACT_BITS,
    HASH_ACC_BITS,
    HASH_COORD_BITS,
    HASH_MAX_BITS,
    HASH_MIN_BITS,
    HASH_POS_BITS,
    HASH_PRIMES,
    HASH_SCALE_BITS,
    HASH_SCALE_FRAC_BITS,
    HASH_WEIGHT_FRAC_BITS,
    REQ_MULT_BITS,
    REQ_SHIFT_BITS,
    WORD_BITS,
    HashLevel,
    hash_words_per_level,
)
from sim_py.heu import PIPELINE_STAGES
from sim_py.mlp_engine import REQUANT_STAGES

from .params import FEATURES, LEVELS, LOG2T, check_int, rejecting
from .requantizer import Requantizer

COUNTER_BITS = 32
_POS_SHIFT = HASH_POS_BITS + HASH_SCALE_FRAC_BITS


def check_heu_params(levels: int, features: int, log2t: int, word_bits: int, depth: int | None) -> int:
    """Raise ValueError naming the parameter that is out of range; returns the memory depth."""
    check_int("levels", levels, 1, 32)
    check_int("features", features, 1, 8)
    check_int("log2t", log2t, 3, 20)
    check_int("word_bits", word_bits, 8, 512)
    if word_bits & (word_bits - 1):
        raise ValueError(f"word_bits must be a power of two, got {word_bits}")
    if word_bits < features * HASH_MAX_BITS:
        raise ValueError(f"word_bits={word_bits} must hold one {HASH_MAX_BITS}-bit entry of features="
                         f"{features}: at least {features * HASH_MAX_BITS}")
    if depth is None:
        depth = levels * hash_words_per_level(1 << log2t, features, HASH_MAX_BITS, word_bits)
    check_int("depth", depth, 2, 1 << 24)
    return depth


def dense_res_bits(log2t: int) -> int:
    """Width of the resolution register: every R with R**3 <= 2**log2t fits."""
    r = 1
    while (r + 1) ** 3 <= 1 << log2t:
        r += 1
    return r.bit_length()


def point_layout() -> data.ArrayLayout:
    """One sample point: u16 coordinates x, y, z (lanes 0, 1, 2), x = raw / 2**16."""
    return data.ArrayLayout(HASH_POS_BITS, 3)


def config_layout(levels: int, log2t: int, depth: int) -> data.StructLayout:
    """One level's configuration registers (hero.intarith.HashLevel), written as one record."""
    return data.StructLayout({
        "level": max(1, (levels - 1).bit_length()),
        "scale": HASH_SCALE_BITS,
        "resolution": dense_res_bits(log2t),
        "dense": 1,
        "entries": log2t + 1,
        "bits": HASH_MAX_BITS.bit_length(),
        "base": max(1, (depth - 1).bit_length()),
        "rq_mult": REQ_MULT_BITS,
        "rq_shift": REQ_SHIFT_BITS,
    })


def level_record(level: int, lv: HashLevel) -> dict:
    """The `config` record of one level (hero.intarith.HashLevel); a hashed level's resolution is 0."""
    return {"level": level, "scale": lv.scale, "resolution": lv.resolution if lv.dense else 0,
            "dense": int(lv.dense), "entries": lv.entries, "bits": lv.bits, "base": lv.base,
            "rq_mult": lv.rq.mult, "rq_shift": lv.rq.shift}


def table_layout(word_bits: int, depth: int) -> data.StructLayout:
    return data.StructLayout({"addr": max(1, (depth - 1).bit_length()), "data": word_bits})


def result_layout(levels: int, features: int) -> data.ArrayLayout:
    """One point's features: lane l*F + f is level l's feature f, an s8 two's complement pattern."""
    return data.ArrayLayout(ACT_BITS, levels * features)


class HEU(wiring.Component):
    """Encodes sample points into L*F signed 8-bit features, one corner lookup per cycle.

    Protocol (docs/heu.md):
    - `config` (always ready) writes one level's registers: scale, resolution, dense, entries,
      bits, base, rq_mult, rq_shift. A record with bits outside 2..8, level >= L or entries
      outside 1..T is refused and raises `error` until the next accepted record.
    - `table` (always ready) writes one memory word {addr, data}; tables are bit-packed
      (hero.intarith.hash_pack_table), each level from its `base` word.
    Write both only while `busy` is low.
    - `point` takes one u16 (x, y, z) per handshake. Each point is looked up level by level,
      corner by corner: 8L cycles, during the last of which the next point is taken.
    - `result` gives one point's L*F features per beat, in input order; the payload is held
      while valid and not ready. A refused result stops the pipeline only when the next point's
      last level is ready to take its place.
    Reset empties the pipeline and clears the configuration registers, not the tables.
    Counters (cleared by reset or `clear`): `cycles` counts cycles in which the unit is busy or
    takes a point; `stall_cycles` those lost to a refused result; `points` the results sent.
    Back to back, n points take n * 8L + 19 cycles (sim_py.heu.cycles_per_batch).
    """

    def __init__(self, *, levels: int = LEVELS, features: int = FEATURES, log2t: int = LOG2T,
                 word_bits: int = WORD_BITS, depth: int | None = None):
        with rejecting(self):
            depth = check_heu_params(levels, features, log2t, word_bits, depth)
        self.levels, self.features, self.log2t = levels, features, log2t
        self.word_bits, self.depth = word_bits, depth
        self.config_layout = config_layout(levels, log2t, depth)
        super().__init__({
            "config": In(stream.Signature(self.config_layout)),
            "table": In(stream.Signature(table_layout(word_bits, depth))),
            "point": In(stream.Signature(point_layout())),
            "result": Out(stream.Signature(result_layout(levels, features))),
            "clear": In(1),
            "busy": Out(1),
            "error": Out(1),
            "cycles": Out(COUNTER_BITS),
            "stall_cycles": Out(COUNTER_BITS),
            "points": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        L, F, W = self.levels, self.features, self.word_bits
        t = 1 << self.log2t
        wf = HASH_WEIGHT_FRAC_BITS
        lvl_shape = range(max(L, 2))  # at least one bit, also for L = 1
        cl = self.config_layout

        # ---- configuration registers -------------------------------------------------------
        regs = Array(Signal(cl.size, name=f"level_cfg_{i}") for i in range(L))
        rb = dense_res_bits(self.log2t)
        res_sq = Array(Signal(2 * rb, name=f"level_res_sq_{i}") for i in range(L))  # R*R, for the dense index
        m.d.comb += [self.config.ready.eq(1), self.table.ready.eq(1)]  # both always ready
        cfg_in = self.config.payload
        cfg_ok = ((cfg_in.bits >= HASH_MIN_BITS) & (cfg_in.bits <= HASH_MAX_BITS) & (cfg_in.level < L)
                  & (cfg_in.entries != 0) & (cfg_in.entries <= t))
        with m.If(self.config.valid):
            m.d.sync += self.error.eq(~cfg_ok)
            with m.If(cfg_ok):
                m.d.sync += [regs[cfg_in.level].eq(cfg_in.as_value()),
                             res_sq[cfg_in.level].eq(cfg_in.resolution * cfg_in.resolution)]

        def cfg(level):
            return cl(regs[level])

        # ---- table memory: two banks of alternate words, so any two adjacent words read at once.
        # Reading the last word (depth - 1, when depth is even) addresses bank 0 one past its end;
        # that high word is then unused, as the entry lies wholly in the last word.
        bank_depth = (self.depth + 1) // 2
        banks = []
        for b in range(2):
            mem = memory.Memory(shape=unsigned(W), depth=bank_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            m.d.comb += [
                wp.addr.eq(self.table.payload.addr >> 1),
                wp.data.eq(self.table.payload.data),
                wp.en.eq(self.table.valid & (self.table.payload.addr[0] == b)),
            ]
            banks.append(mem.read_port())

        # ---- pipeline control ----------------------------------------------------------------
        # Every stage is a set of registers advancing together when `en` is high; `pipe` makes one.
        en = Signal()  # the whole pipeline advances
        valids = []

        def pipe(prev: dict, name: str, **values) -> dict:
            """The next stage: registers of prev's valid/lvl/crn and of `values`, loaded when en."""
            out = {}
            for k, v in {"valid": prev["valid"], "lvl": prev["lvl"], "crn": prev["crn"], **values}.items():
                v = Value.cast(v)
                r = Signal(v.shape(), name=f"{name}_{k}")
                with m.If(en):
                    m.d.sync += r.eq(v)
                out[k] = r
            valids.append(out["valid"])
            return out

        # ---- issue: holds the point; one (level, corner) per cycle --------------------------------
        pt = Signal(point_layout())
        s0_valid = Signal()
        lvl0 = Signal(lvl_shape)
        crn0 = Signal(3)
        valids.append(s0_valid)
        last0 = (lvl0 == L - 1) & (crn0 == 7)
        take = self.point.valid & self.point.ready
        with m.If(en):
            with m.If(s0_valid):
                m.d.sync += crn0.eq(crn0 + 1)
                with m.If(crn0 == 7):
                    m.d.sync += lvl0.eq(Mux(lvl0 == L - 1, 0, lvl0 + 1))
            with m.If(take):
                m.d.sync += [pt.eq(self.point.payload), s0_valid.eq(1), lvl0.eq(0), crn0.eq(0)]
            with m.Elif(last0):
                m.d.sync += s0_valid.eq(0)
        s = {"valid": s0_valid, "lvl": lvl0, "crn": crn0}
        s = pipe(s, "lookup", pos=pt.as_value(), scale=cfg(lvl0).scale)

        # ---- scale: p = raw * scale_l + 2**27 per axis; grid corner and fraction -----------------
        corner, frac = [], []
        for a in range(3):
            p = Signal(HASH_POS_BITS + HASH_SCALE_BITS + 1, name=f"scaled_{'xyz'[a]}")
            m.d.comb += p.eq(s["pos"][a * HASH_POS_BITS:(a + 1) * HASH_POS_BITS] * s["scale"] + (1 << (_POS_SHIFT - 1)))
            corner.append(p[_POS_SHIFT:_POS_SHIFT + HASH_COORD_BITS])
            frac.append(p[_POS_SHIFT - wf:_POS_SHIFT])
        s = pipe(s, "scaled", corner=Cat(*corner), frac=Cat(*frac))

        # ---- vertex and per-axis weights ----------------------------------------------------------
        cb = HASH_COORD_BITS
        vert, axis_w = [], []
        for a in range(3):
            bit = s["crn"][a]
            vert.append((s["corner"][a * cb:(a + 1) * cb] + bit)[:cb])
            f = s["frac"][a * wf:(a + 1) * wf]
            axis_w.append(Mux(bit, f, (1 << wf) - f)[:wf + 1])
        s = pipe(s, "vertex", vert=Cat(*vert), w=Cat(*axis_w))

        # ---- index terms: dense x, y*R, z*R*R; hashed vertex * prime mod T; weight products -------
        lo = self.log2t
        res = cfg(s["lvl"]).resolution
        v = [s["vert"][a * cb:(a + 1) * cb] for a in range(3)]
        aw = [s["w"][a * (wf + 1):(a + 1) * (wf + 1)] for a in range(3)]
        hashed = [(v[a] * (HASH_PRIMES[a] % t))[:lo] for a in range(3)]
        s = pipe(s, "terms", dx=v[0][:rb], dy=v[1][:rb] * res, dz=v[2][:rb] * res_sq[s["lvl"]],
                 hash=hashed[0] ^ hashed[1] ^ hashed[2], wxy=aw[0] * aw[1], wz=aw[2])

        # ---- dense sum; corner weight --------------------------------------------------------------
        dense_raw = Signal(3 * rb + 2)
        m.d.comb += dense_raw.eq(s["dx"] + s["dy"] + s["dz"])
        s = pipe(s, "sum", dense=dense_raw, hash=s["hash"], w=(s["wxy"] * s["wz"])[:3 * wf + 1])

        # ---- table index (dense: minus entries once if needed); the level's entry geometry --------
        c = cfg(s["lvl"])
        dense_idx = Mux(s["dense"] >= c.entries, s["dense"] - c.entries, s["dense"])
        s = pipe(s, "index", idx=Mux(c.dense, dense_idx, s["hash"])[:lo], w=s["w"], bits=c.bits,
                 entry_bits=c.bits * F, base=c.base)

        # ---- bit offset of the entry ---------------------------------------------------------------
        s = pipe(s, "bitoff", bitoff=(s["idx"] * s["entry_bits"])[:lo + 7], base=s["base"], w=s["w"],
                 bits=s["bits"])

        # ---- word address; the two banks' read addresses -----------------------------------------
        log2w = W.bit_length() - 1
        word = Signal(len(c.base) + 1)
        m.d.comb += word.eq(s["base"] + (s["bitoff"] >> log2w))
        s = pipe(s, "addr", addr0=(word + 1) >> 1, addr1=word >> 1, odd=word[0], shift=s["bitoff"][:log2w],
                 w=s["w"], bits=s["bits"])
        m.d.comb += [banks[0].addr.eq(s["addr0"]), banks[1].addr.eq(s["addr1"]),
                     banks[0].en.eq(en), banks[1].en.eq(en)]
        s = pipe(s, "read", odd=s["odd"], shift=s["shift"], w=s["w"], bits=s["bits"])  # the banks read

        # ---- the two words, low first ---------------------------------------------------------------
        lo_word = Mux(s["odd"], banks[1].data, banks[0].data)
        hi_word = Mux(s["odd"], banks[0].data, banks[1].data)
        s = pipe(s, "words", words=Cat(lo_word, hi_word), shift=s["shift"], w=s["w"], bits=s["bits"])

        # ---- the entry --------------------------------------------------------------------------------
        s = pipe(s, "entry", entry=(s["words"] >> s["shift"])[:F * HASH_MAX_BITS], w=s["w"], bits=s["bits"])

        # ---- its F fields, sign-extended ----------------------------------------------------------
        mask = ((Const(1, HASH_MAX_BITS + 1) << s["bits"]) - 1)[:HASH_MAX_BITS]
        half = ((Const(1, HASH_MAX_BITS + 1) << s["bits"]) >> 1)[:HASH_MAX_BITS]
        values = {}
        for f in range(F):
            field = Signal(HASH_MAX_BITS, name=f"field_{f}")
            m.d.comb += field.eq((s["entry"] >> (s["bits"] * f)) & mask)
            value = Signal(signed(HASH_MAX_BITS + 1), name=f"value_{f}")
            m.d.comb += value.eq((field ^ half) - half)
            values[f"value{f}"] = value
        s = pipe(s, "field", w=s["w"], **values)

        # ---- corner weight times each feature ----------------------------------------------------
        s = pipe(s, "product", **{f"prod{f}": s[f"value{f}"] * s["w"] for f in range(F)})

        # ---- accumulate the eight corners (loaded, not added, at corner 0) ----------------------
        acc = [Signal(signed(HASH_ACC_BITS), name=f"acc_{f}") for f in range(F)]
        with m.If(en & s["valid"]):
            m.d.sync += [acc[f].eq(Mux(s["crn"] == 0, 0, acc[f]) + s[f"prod{f}"]) for f in range(F)]
        rq_cfg = cfg(s["lvl"])
        rq_mult = Signal(REQ_MULT_BITS)  # the level's requantization, held for its whole pipeline
        rq_shift = Signal(REQ_SHIFT_BITS)
        with m.If(en & s["valid"] & (s["crn"] == 7)):
            m.d.sync += [rq_mult.eq(rq_cfg.rq_mult), rq_shift.eq(rq_cfg.rq_shift)]
        s = pipe(s, "sum8", valid=s["valid"] & (s["crn"] == 7))

        # ---- requantize the level's F features to s8 (REQUANT_STAGES), assemble the point ------
        q = []
        for f in range(F):
            rq = Requantizer(acc_bits=HASH_ACC_BITS, act_bits=ACT_BITS, pipelined=True)
            m.submodules[f"requant_{f}"] = rq
            m.d.comb += [rq.acc.eq(acc[f]), rq.mult.eq(rq_mult), rq.shift.eq(rq_shift), rq.en.eq(en),
                         rq.relu.eq(0), rq.out_bits.eq(ACT_BITS)]
            q.append(rq.q)
        for i in range(REQUANT_STAGES):
            s = pipe(s, f"requant{i}")
        completing = s["valid"] & (s["lvl"] == L - 1)
        refused = self.result.valid & ~self.result.ready
        m.d.comb += [en.eq(~(completing & refused)), self.point.ready.eq(en & (~s0_valid | last0))]
        lane_bits = F * ACT_BITS
        asm = Signal(L * lane_bits)  # levels so far, shifting down by one level per level done
        asm_next = Cat(asm[lane_bits:], *q)
        with m.If(en & s["valid"]):
            m.d.sync += asm.eq(asm_next)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += self.result.valid.eq(0)
        with m.If(en & completing):
            m.d.sync += [self.result.valid.eq(1), self.result.payload.eq(asm_next)]
        inflight = Cat(*valids).any()
        assert len(valids) == PIPELINE_STAGES, "sim_py.heu.PIPELINE_STAGES counts the issue stage and these"


        # ---- status and counters -----------------------------------------------------------------
        m.d.comb += self.busy.eq(inflight | self.result.valid)
        with m.If(self.clear):
            m.d.sync += [self.cycles.eq(0), self.stall_cycles.eq(0), self.points.eq(0)]
        with m.Else():
            with m.If(self.busy | take):
                m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(refused & (completing | ~inflight)):
                m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)
            with m.If(self.result.valid & self.result.ready):
                m.d.sync += self.points.eq(self.points + 1)
        return m
