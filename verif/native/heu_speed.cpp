// Free-running Verilator model of heu: how fast the unit simulates with no Python per cycle.
// Verilator mangles the double underscore of Amaranth's stream port names as ___05F.
// Usage: speed STIMULUS_FILE. The file holds unsigned 32-bit words, least significant first:
//   CFG_WORDS TABLE_WORDS POINT_WORDS RESULT_WORDS
//   N_CONFIG, then N_CONFIG records of CFG_WORDS words
//   N_TABLE, then N_TABLE writes of TABLE_WORDS words
//   N_POINTS, then N_POINTS points of POINT_WORDS words
// Configures the unit, loads the tables, then sends the points back to back with the result always
// ready. Prints "cycles seconds counter_cycles", then one line per result (RESULT_WORDS words).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "Vheu.h"
#include "verilated.h"

using Words = std::vector<uint32_t>;

template <typename T> void set_words(T& sig, const Words& w) {
    if constexpr (std::is_integral_v<T>) {
        sig = static_cast<T>(w[0] | (w.size() > 1 ? static_cast<uint64_t>(w[1]) << 32 : 0));
    } else {
        for (size_t i = 0; i < w.size(); ++i) sig[i] = w[i];
    }
}

template <typename T> Words get_words(const T& sig, size_t n) {
    Words out(n, 0);
    if constexpr (std::is_integral_v<T>) {
        out[0] = static_cast<uint32_t>(sig);
        if (n > 1) out[1] = static_cast<uint32_t>(static_cast<uint64_t>(sig) >> 32);
    } else {
        for (size_t i = 0; i < n; ++i) out[i] = sig[i];
    }
    return out;
}

static std::vector<Words> read_block(FILE* f, size_t width) {
    unsigned long n = 0;
    if (std::fscanf(f, "%lu", &n) != 1) return {};
    std::vector<Words> block(n, Words(width));
    for (auto& w : block)
        for (auto& x : w)
            if (std::fscanf(f, "%u", &x) != 1) return {};
    return block;
}

int main(int argc, char** argv) {
    if (argc != 2) { std::fprintf(stderr, "usage: %s STIMULUS_FILE\n", argv[0]); return 2; }
    FILE* f = std::fopen(argv[1], "r");
    if (!f) { std::perror(argv[1]); return 2; }
    size_t cw, tw, pw, rw;
    if (std::fscanf(f, "%zu %zu %zu %zu", &cw, &tw, &pw, &rw) != 4) return 2;
    auto configs = read_block(f, cw);
    auto tables = read_block(f, tw);
    auto points = read_block(f, pw);
    std::fclose(f);

    VerilatedContext ctx;
    Vheu top{&ctx};
    long cycles = 0;
    auto tick = [&] { top.clk = 0; top.eval(); top.clk = 1; top.eval(); ++cycles; };
    top.rst = 1; tick(); tick(); top.rst = 0;
    for (auto& c : configs) { set_words(top.config___05Fpayload, c); top.config___05Fvalid = 1; tick(); }
    top.config___05Fvalid = 0;
    if (top.error) { std::fprintf(stderr, "config refused\n"); return 1; }
    for (auto& t : tables) { set_words(top.table___05Fpayload, t); top.table___05Fvalid = 1; tick(); }
    top.table___05Fvalid = 0;
    top.clear = 1; tick(); top.clear = 0;

    std::vector<Words> results;
    results.reserve(points.size());
    size_t fed = 0;
    cycles = 0;
    auto t0 = std::chrono::steady_clock::now();
    top.result___05Fready = 1;
    while (results.size() < points.size()) {
        top.point___05Fvalid = fed < points.size();
        if (fed < points.size()) set_words(top.point___05Fpayload, points[fed]);
        top.clk = 0;
        top.eval();
        if (top.point___05Fvalid && top.point___05Fready) ++fed;
        if (top.result___05Fvalid) results.push_back(get_words(top.result___05Fpayload, rw));
        top.clk = 1;
        top.eval();
        ++cycles;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    top.point___05Fvalid = 0;
    std::printf("%ld %.6f %u\n", cycles, seconds, static_cast<unsigned>(top.cycles));
    for (auto& r : results) {
        for (size_t i = 0; i < r.size(); ++i) std::printf(i ? " %u" : "%u", r[i]);
        std::printf("\n");
    }
    return 0;
}
