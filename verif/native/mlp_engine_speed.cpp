// Free-running Verilator model of mlp_engine: how fast the array simulates with no Python per cycle.
// Verilator mangles the double underscore of Amaranth's stream port names as ___05F.
// Usage: speed K TILES WBITS N MULT_WORDS[N] PAYLOAD_WORDS...   (the per-column rq_mult port and the
// operand payload as 32-bit words, least significant first)
// Prints: cycles seconds result_word0 result_word1 ...   (the last tile's row-0 result payload)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "Vmlp_engine.h"
#include "verilated.h"

template <typename T> void set_words(T& sig, const std::vector<uint32_t>& w) {
    if constexpr (std::is_integral_v<T>) {
        sig = static_cast<T>(w[0] | (w.size() > 1 ? static_cast<uint64_t>(w[1]) << 32 : 0));
    } else {
        for (size_t i = 0; i < w.size(); ++i) sig[i] = w[i];
    }
}

template <typename T> std::vector<uint32_t> get_words(const T& sig) {
    if constexpr (std::is_integral_v<T>) {
        return {static_cast<uint32_t>(sig), static_cast<uint32_t>(static_cast<uint64_t>(sig) >> 32)};
    } else {
        return std::vector<uint32_t>(sig.data(), sig.data() + sizeof(sig) / sizeof(uint32_t));
    }
}

int main(int argc, char** argv) {
    if (argc < 6) { std::fprintf(stderr, "usage: %s K TILES WBITS N MULT_WORDS... WORDS...\n", argv[0]); return 2; }
    const long k = std::atol(argv[1]);
    const long tiles = std::atol(argv[2]);
    const int n_mult = std::atoi(argv[4]);
    std::vector<uint32_t> mult, payload;
    for (int i = 5; i < argc; ++i)
        (i < 5 + n_mult ? mult : payload).push_back(static_cast<uint32_t>(std::strtoul(argv[i], nullptr, 0)));

    VerilatedContext ctx;
    Vmlp_engine top{&ctx};
    long cycles = 0;
    auto tick = [&] { top.clk = 0; top.eval(); top.clk = 1; top.eval(); ++cycles; };
    top.rst = 1; tick(); tick(); top.rst = 0;
    top.k = k; top.wbits = std::atoi(argv[3]); top.act_signed = 0;
    set_words(top.rq_mult, mult);
    top.rq_shift = 0; top.rq_relu = 0; top.rq_out_bits = 8;
    set_words(top.operand___05Fpayload, payload);
    top.operand___05Fvalid = 1; top.result___05Fready = 1;

    cycles = 0;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<uint32_t> row0;
    for (long t = 0; t < tiles; ++t) {
        top.start = 1; tick(); top.start = 0;
        bool first_row = true;  // rows drain in order: the first valid one is row 0
        while (!top.done) {
            if (first_row && top.result___05Fvalid) { row0 = get_words(top.result___05Fpayload); first_row = false; }
            tick();
        }
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%ld %.6f", cycles, seconds);
    for (uint32_t w : row0) std::printf(" %u", w);
    std::printf("\n");
    return 0;
}
