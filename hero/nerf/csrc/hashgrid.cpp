// Multi-resolution hash encoding (tiny-cuda-nn grid.h conventions), forward and backward, on the CPU.
// Tensors are passed as raw pointers (checked on the Python side) so that only pybind11 is compiled.
// Threads split the levels: each thread owns whole levels, so the backward scatter has no races.
#include <pybind11/pybind11.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <omp.h>

// The spatial hash's primes come from hero.intarith.HASH_PRIMES (hashgrid.native passes them).
#if !defined(HERO_HASH_PRIME_Y) || !defined(HERO_HASH_PRIME_Z)
#error "build through hero.nerf.hashgrid.native(), which defines the hash primes from hero.intarith"
#endif

namespace {

struct Level {
  float scale;
  uint32_t res;
  uint32_t entries;
  int64_t offset;
  bool dense;
};

inline uint32_t grid_index(const Level& lv, uint32_t x, uint32_t y, uint32_t z, uint32_t hash_mask) {
  if (lv.dense) return (x + y * lv.res + z * lv.res * lv.res) % lv.entries;
  return (x ^ (y * HERO_HASH_PRIME_Y) ^ (z * HERO_HASH_PRIME_Z)) & hash_mask;
}

// Corner indices (8) and trilinear weights (8) of one point at one level.
inline void corners(const Level& lv, const float* p, uint32_t hash_mask, uint32_t* idx, float* w) {
  float frac[3];
  uint32_t base[3];
  for (int d = 0; d < 3; ++d) {
    float pos = p[d] * lv.scale;
    pos = pos + 0.5f;
    float fl = std::floor(pos);
    base[d] = (uint32_t)fl;
    frac[d] = pos - fl;
  }
  for (int c = 0; c < 8; ++c) {
    float wx = (c & 1) ? frac[0] : 1.0f - frac[0];
    float wy = (c & 2) ? frac[1] : 1.0f - frac[1];
    float wz = (c & 4) ? frac[2] : 1.0f - frac[2];
    w[c] = (wx * wy) * wz;
    idx[c] = grid_index(lv, base[0] + (c & 1), base[1] + ((c >> 1) & 1), base[2] + ((c >> 2) & 1), hash_mask);
  }
}

struct Grid {
  const float* x;  // [n, 3] in [0, 1)
  int64_t n;
  int F;
  int L;
  uint32_t hash_mask;
  const float* scales;
  const int64_t* res;
  const int64_t* entries;
  const int64_t* offsets;
  const int64_t* dense;
  Level level(int l) const {
    return Level{scales[l], (uint32_t)res[l], (uint32_t)entries[l], offsets[l], dense[l] != 0};
  }
};

Grid make_grid(intptr_t x, int64_t n, int F, int L, int log2T, intptr_t scales, intptr_t res, intptr_t entries,
               intptr_t offsets, intptr_t dense) {
  return Grid{reinterpret_cast<const float*>(x), n, F, L, (uint32_t)((1ull << log2T) - 1),
              reinterpret_cast<const float*>(scales), reinterpret_cast<const int64_t*>(res),
              reinterpret_cast<const int64_t*>(entries), reinterpret_cast<const int64_t*>(offsets),
              reinterpret_cast<const int64_t*>(dense)};
}

// out[n, L*F] = sum_c w_c * table_l[idx_c]
void forward(intptr_t x, int64_t n, int F, int L, int log2T, intptr_t scales, intptr_t res, intptr_t entries,
             intptr_t offsets, intptr_t dense, intptr_t emb_p, intptr_t out_p, int threads) {
  Grid g = make_grid(x, n, F, L, log2T, scales, res, entries, offsets, dense);
  const float* emb = reinterpret_cast<const float*>(emb_p);
  float* out = reinterpret_cast<float*>(out_p);
  pybind11::gil_scoped_release nogil;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) collapse(2)
  for (int l = 0; l < L; ++l) {
    for (int64_t chunk = 0; chunk < (n + 4095) / 4096; ++chunk) {
      const Level lv = g.level(l);
      const float* table = emb + lv.offset * F;
      uint32_t idx[8];
      float w[8];
      int64_t end = std::min<int64_t>(n, (chunk + 1) * 4096);
      for (int64_t i = chunk * 4096; i < end; ++i) {
        corners(lv, g.x + 3 * i, g.hash_mask, idx, w);
        float* o = out + i * (int64_t)L * F + l * F;
        for (int f = 0; f < F; ++f) {
          float acc = 0.0f;
          for (int c = 0; c < 8; ++c) acc += w[c] * table[(int64_t)idx[c] * F + f];
          o[f] = acc;
        }
      }
    }
  }
}

// grad_emb[idx_c] += w_c * grad_out (grad_emb must be zeroed by the caller)
void backward(intptr_t x, int64_t n, int F, int L, int log2T, intptr_t scales, intptr_t res, intptr_t entries,
              intptr_t offsets, intptr_t dense, intptr_t grad_out_p, intptr_t grad_emb_p, int threads) {
  Grid g = make_grid(x, n, F, L, log2T, scales, res, entries, offsets, dense);
  const float* go = reinterpret_cast<const float*>(grad_out_p);
  float* ge = reinterpret_cast<float*>(grad_emb_p);
  pybind11::gil_scoped_release nogil;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int l = 0; l < L; ++l) {
    const Level lv = g.level(l);
    float* table = ge + lv.offset * F;
    uint32_t idx[8];
    float w[8];
    for (int64_t i = 0; i < n; ++i) {
      corners(lv, g.x + 3 * i, g.hash_mask, idx, w);
      const float* gi = go + i * (int64_t)L * F + l * F;
      for (int c = 0; c < 8; ++c)
        for (int f = 0; f < F; ++f) table[(int64_t)idx[c] * F + f] += w[c] * gi[f];
    }
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "hash-grid encoding forward");
  m.def("backward", &backward, "hash-grid encoding backward (gradient of the tables)");
}
