"""HEU: the hash encoding unit, Instant-NGP's multi-resolution hash grid, one corner lookup per cycle."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
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
        "bits": 4,
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
    Back to back, n points take n * 8L + 6 cycles (sim_py.heu.cycles_per_batch).
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
        m.d.comb += [self.config.ready.eq(1), self.table.ready.eq(1)]  # both always ready
        cfg_in = self.config.payload
        cfg_ok = ((cfg_in.bits >= HASH_MIN_BITS) & (cfg_in.bits <= HASH_MAX_BITS) & (cfg_in.level < L)
                  & (cfg_in.entries != 0) & (cfg_in.entries <= t))
        with m.If(self.config.valid):
            m.d.sync += self.error.eq(~cfg_ok)
            with m.If(cfg_ok):
                m.d.sync += regs[cfg_in.level].eq(cfg_in.as_value())

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
        en = Signal()  # the whole pipeline advances
        s0_valid, s1_valid, s2_valid, s3_valid, s4_valid = (Signal(name=f"s{i}_valid") for i in range(5))
        s4_lvl = Signal(lvl_shape)
        completing = s4_valid & (s4_lvl == L - 1)
        refused = self.result.valid & ~self.result.ready
        m.d.comb += en.eq(~(completing & refused))
        inflight = s0_valid | s1_valid | s2_valid | s3_valid | s4_valid

        # ---- S0: issue. Holds the point; one (level, corner) per cycle; scaled position ----------
        pt = Signal(point_layout())
        lvl0 = Signal(lvl_shape)
        crn0 = Signal(3)
        last0 = (lvl0 == L - 1) & (crn0 == 7)
        take = self.point.valid & self.point.ready
        m.d.comb += self.point.ready.eq(en & (~s0_valid | last0))
        with m.If(en):
            with m.If(s0_valid):
                m.d.sync += crn0.eq(crn0 + 1)
                with m.If(crn0 == 7):
                    m.d.sync += lvl0.eq(Mux(lvl0 == L - 1, 0, lvl0 + 1))
            with m.If(take):
                m.d.sync += [pt.eq(self.point.payload), s0_valid.eq(1), lvl0.eq(0), crn0.eq(0)]
            with m.Elif(last0):
                m.d.sync += s0_valid.eq(0)

        scale0 = cfg(lvl0).scale
        s1_corner = Signal(data.ArrayLayout(HASH_COORD_BITS, 3))
        s1_frac = Signal(data.ArrayLayout(wf, 3))
        s1_lvl = Signal(lvl_shape)
        s1_crn = Signal(3)
        with m.If(en):
            m.d.sync += [s1_valid.eq(s0_valid), s1_lvl.eq(lvl0), s1_crn.eq(crn0)]
            for a in range(3):
                p = Signal(HASH_POS_BITS + HASH_SCALE_BITS + 1, name=f"scaled_{'xyz'[a]}")
                m.d.comb += p.eq(pt[a] * scale0 + (1 << (_POS_SHIFT - 1)))
                m.d.sync += [s1_corner[a].eq(p[_POS_SHIFT:]), s1_frac[a].eq(p[_POS_SHIFT - wf:_POS_SHIFT])]

        # ---- S1: vertex, table index (dense or hashed), trilinear weight ------------------------
        cfg1 = cfg(s1_lvl)
        vert = [Signal(HASH_COORD_BITS, name=f"vertex_{'xyz'[a]}") for a in range(3)]
        axis_w = [Signal(wf + 1, name=f"weight_{'xyz'[a]}") for a in range(3)]
        for a in range(3):
            bit = s1_crn[a]
            m.d.comb += [
                vert[a].eq(s1_corner[a] + bit),
                axis_w[a].eq(Mux(bit, s1_frac[a], (1 << wf) - s1_frac[a])),
            ]
        rb = len(cfg1.resolution)
        res = cfg1.resolution
        dense_raw = Signal(3 * rb + 2)
        m.d.comb += dense_raw.eq(vert[0][:rb] + vert[1][:rb] * res + vert[2][:rb] * (res * res))
        dense_idx = Mux(dense_raw >= cfg1.entries, dense_raw - cfg1.entries, dense_raw)
        lo = self.log2t
        hashed = [(vert[a] * (HASH_PRIMES[a] % t))[:lo] for a in range(3)]
        hash_idx = hashed[0] ^ hashed[1] ^ hashed[2]
        s2_idx = Signal(lo)
        s2_w = Signal(3 * wf + 1)
        s2_lvl = Signal(lvl_shape)
        s2_crn = Signal(3)
        with m.If(en):
            m.d.sync += [
                s2_valid.eq(s1_valid), s2_lvl.eq(s1_lvl), s2_crn.eq(s1_crn),
                s2_idx.eq(Mux(cfg1.dense, dense_idx, hash_idx)),
                s2_w.eq(axis_w[0] * axis_w[1] * axis_w[2]),
            ]

        # ---- S2: bit address of the entry; read the two words it may span ------------------------
        cfg2 = cfg(s2_lvl)
        log2w = W.bit_length() - 1
        bitoff = Signal(lo + 7)
        word = Signal(len(cfg2.base) + 1)
        m.d.comb += [
            bitoff.eq(s2_idx * (cfg2.bits * F)),
            word.eq(cfg2.base + (bitoff >> log2w)),
            banks[0].addr.eq((word + 1) >> 1),
            banks[1].addr.eq(word >> 1),
            banks[0].en.eq(en),
            banks[1].en.eq(en),
        ]
        s3_odd = Signal()
        s3_shift = Signal(log2w)
        s3_w = Signal.like(s2_w)
        s3_lvl = Signal(lvl_shape)
        s3_crn = Signal(3)
        with m.If(en):
            m.d.sync += [s3_valid.eq(s2_valid), s3_lvl.eq(s2_lvl), s3_crn.eq(s2_crn), s3_w.eq(s2_w),
                         s3_odd.eq(word[0]), s3_shift.eq(bitoff[:log2w])]

        # ---- S3: extract the entry, sign-extend its features, weight and accumulate --------------
        cfg3 = cfg(s3_lvl)
        lo_word = Mux(s3_odd, banks[1].data, banks[0].data)
        hi_word = Mux(s3_odd, banks[0].data, banks[1].data)
        entry = Signal(F * HASH_MAX_BITS)
        m.d.comb += entry.eq(Cat(lo_word, hi_word) >> s3_shift)
        bits3 = cfg3.bits
        mask = Signal(HASH_MAX_BITS)
        half = Signal(HASH_MAX_BITS)
        m.d.comb += [mask.eq((Const(1, HASH_MAX_BITS + 1) << bits3) - 1),
                     half.eq((Const(1, HASH_MAX_BITS + 1) << bits3) >> 1)]
        acc = [Signal(signed(HASH_ACC_BITS), name=f"acc_{f}") for f in range(F)]
        s4_acc = [Signal(signed(HASH_ACC_BITS), name=f"s4_acc_{f}") for f in range(F)]
        for f in range(F):
            field = Signal(HASH_MAX_BITS, name=f"field_{f}")
            value = Signal(signed(HASH_MAX_BITS + 1), name=f"value_{f}")
            nxt = Signal(signed(HASH_ACC_BITS), name=f"acc_next_{f}")
            m.d.comb += [
                field.eq((entry >> (bits3 * f)) & mask),
                value.eq((field ^ half) - half),
                nxt.eq(Mux(s3_crn == 0, 0, acc[f]) + value * s3_w),
            ]
            with m.If(en & s3_valid):
                m.d.sync += acc[f].eq(nxt)
                m.d.sync += s4_acc[f].eq(nxt)
        with m.If(en):
            m.d.sync += [s4_valid.eq(s3_valid & (s3_crn == 7)), s4_lvl.eq(s3_lvl)]

        # ---- S4: requantize the level's F features to s8; assemble the point; output register ---
        cfg4 = cfg(s4_lvl)
        q = []
        for f in range(F):
            rq = Requantizer(acc_bits=HASH_ACC_BITS, act_bits=ACT_BITS)
            m.submodules[f"requant_{f}"] = rq
            m.d.comb += [rq.acc.eq(s4_acc[f]), rq.mult.eq(cfg4.rq_mult), rq.shift.eq(cfg4.rq_shift),
                         rq.relu.eq(0), rq.out_bits.eq(ACT_BITS)]
            q.append(rq.q)
        lane_bits = F * ACT_BITS
        asm = Signal(L * lane_bits)  # levels so far, shifting down by one level per level done
        asm_next = Cat(asm[lane_bits:], *q)
        with m.If(en & s4_valid):
            m.d.sync += asm.eq(asm_next)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += self.result.valid.eq(0)
        with m.If(en & completing):
            m.d.sync += [self.result.valid.eq(1), self.result.payload.eq(asm_next)]

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
