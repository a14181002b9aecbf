// CPU kernel for nfs.model.fast_decoder.FoldedDecoder: one layer's GroupNorm + ReLU on one frame's activations.
//
// The folded decoder computes per layer a bare matrix product g (V, W), then needs each channel's mean and
// variance over the V vertices, combines them over GroupNorm groups into a per-channel factor s and threshold,
// and clamps g in place. In eager torch that is a statistics pass, some 25 tiny vector operations and a clamp
// pass; here it is one call: a register-blocked statistics pass, the group arithmetic in double, and a clamp pass
// that also re-centres the activations (so the next product's output is centred too, which keeps bfloat16
// storage exact to its relative precision). Both passes run on ATen's thread pool over blocks of rows.
//
// Built once per machine by nfs/model/cpu_kernels.py (g++ -O3 -march=native -fopenmp); the Python path in
// fast_decoder.py computes the same thing where no compiler is at hand.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kBlockRows = 512;  // rows per work item: 512 x 192 bfloat16 = 196 KB, resident in L2
constexpr int64_t kSampleStride = 8;  // every 8th row estimates the centre of the clamped activations
constexpr int kChunk = 32;            // columns summed per sweep of a block, accumulators held in registers

struct Bf16 {
  using T = uint16_t;
  static inline float load(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static inline uint16_t store(float f) {  // round to nearest even (inputs are finite)
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
  }
};

struct F32 {
  using T = float;
  static inline float load(float f) { return f; }
  static inline float store(float f) { return f; }
};

// column sums and sums of squares of rows x[0:rows] (rows x w), added into S and Q; any width and type
template <class Ops>
void block_sums_plain(const typename Ops::T* x, int64_t rows, int64_t w, double* S, double* Q) {
  int64_t j0 = 0;
  for (; j0 + kChunk <= w; j0 += kChunk) {
    float s[kChunk] = {}, q[kChunk] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const typename Ops::T* p = x + r * w + j0;
      for (int j = 0; j < kChunk; ++j) {
        const float v = Ops::load(p[j]);
        s[j] += v;
        q[j] += v * v;
      }
    }
    for (int j = 0; j < kChunk; ++j) {
      S[j0 + j] += s[j];
      Q[j0 + j] += q[j];
    }
  }
  for (; j0 < w; ++j0) {
    float s = 0.f, q = 0.f;
    for (int64_t r = 0; r < rows; ++r) {
      const float v = Ops::load(x[r * w + j0]);
      s += v;
      q += v * v;
    }
    S[j0] += s;
    Q[j0] += q;
  }
}

#if defined(__AVX512F__)
// 32 bfloat16 values as two float vectors without shuffles: each 32-bit lane holds columns 2i (low half) and
// 2i+1 (high half), so `even` = lane << 16 and `odd` = lane & 0xFFFF0000 (for sums, where column order is undone
// once at the end)
inline void bf16_split(__m512i x, __m512& even, __m512& odd) {
  even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
  odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(int(0xFFFF0000u))));
}

// 32 bfloat16 values as two float vectors in column order: columns 0-15 and 16-31 (two zero-extensions)
inline void bf16_widen(__m512i x, __m512& first, __m512& second) {
  first = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(x)), 16));
  second = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(x, 1)), 16));
}

// block_sums_plain for bfloat16 with w a multiple of 32: 32 columns per sweep, two rows per step
void block_sums_bf16_avx512(const uint16_t* x, int64_t rows, int64_t w, double* S, double* Q) {
  for (int64_t j0 = 0; j0 < w; j0 += 32) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, q0 = s0, q1 = s0, s2 = s0, s3 = s0, q2 = s0, q3 = s0;
    __m512 a0, a1, b0, b1;
    int64_t r = 0;
    for (; r + 1 < rows; r += 2) {
      bf16_split(_mm512_loadu_si512(x + r * w + j0), a0, a1);
      bf16_split(_mm512_loadu_si512(x + (r + 1) * w + j0), b0, b1);
      s0 = _mm512_add_ps(s0, a0); q0 = _mm512_fmadd_ps(a0, a0, q0);
      s1 = _mm512_add_ps(s1, a1); q1 = _mm512_fmadd_ps(a1, a1, q1);
      s2 = _mm512_add_ps(s2, b0); q2 = _mm512_fmadd_ps(b0, b0, q2);
      s3 = _mm512_add_ps(s3, b1); q3 = _mm512_fmadd_ps(b1, b1, q3);
    }
    if (r < rows) {
      bf16_split(_mm512_loadu_si512(x + r * w + j0), a0, a1);
      s0 = _mm512_add_ps(s0, a0); q0 = _mm512_fmadd_ps(a0, a0, q0);
      s1 = _mm512_add_ps(s1, a1); q1 = _mm512_fmadd_ps(a1, a1, q1);
    }
    alignas(64) float out[4][16];
    _mm512_store_ps(out[0], _mm512_add_ps(s0, s2));  // even columns
    _mm512_store_ps(out[1], _mm512_add_ps(s1, s3));  // odd columns
    _mm512_store_ps(out[2], _mm512_add_ps(q0, q2));
    _mm512_store_ps(out[3], _mm512_add_ps(q1, q3));
    for (int i = 0; i < 16; ++i) {
      S[j0 + 2 * i] += out[0][i];
      S[j0 + 2 * i + 1] += out[1][i];
      Q[j0 + 2 * i] += out[2][i];
      Q[j0 + 2 * i + 1] += out[3][i];
    }
  }
}
#endif

template <class Ops>
void block_sums(const typename Ops::T* x, int64_t rows, int64_t w, double* S, double* Q) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Ops, Bf16>) {
    if (w % 32 == 0) return block_sums_bf16_avx512(x, rows, w, S, Q);
  }
#endif
  block_sums_plain<Ops>(x, rows, w, S, Q);
}

#if defined(__AVX512BF16__)
// rows of x <- bf16(max(x, lo) - e), w a multiple of 32, rounded back by the CPU's own float -> bfloat16
// instruction (a CPU without it computes in float32, so bfloat16 is not decoded there but through the plain loop)
inline void clamp_shift_rows_bf16(uint16_t* x, int64_t rows, int64_t w, const float* lo, const float* e) {
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* p = x + r * w;
    for (int64_t j = 0; j < w; j += 32) {
      __m512 v0, v1;
      bf16_widen(_mm512_loadu_si512(p + j), v0, v1);
      v0 = _mm512_sub_ps(_mm512_max_ps(v0, _mm512_loadu_ps(lo + j)), _mm512_loadu_ps(e + j));
      v1 = _mm512_sub_ps(_mm512_max_ps(v1, _mm512_loadu_ps(lo + j + 16)), _mm512_loadu_ps(e + j + 16));
      _mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(v1, v0));
    }
  }
}
#endif

template <class Ops>
void clamp_shift_rows(typename Ops::T* x, int64_t rows, int64_t w, const float* lo, const float* e) {
#if defined(__AVX512BF16__)
  if constexpr (std::is_same_v<Ops, Bf16>) {
    if (w % 32 == 0) return clamp_shift_rows_bf16(x, rows, w, lo, e);
  }
#endif
  for (int64_t r = 0; r < rows; ++r) {
    typename Ops::T* p = x + r * w;
    for (int64_t j = 0; j < w; ++j) p[j] = Ops::store(std::max(Ops::load(p[j]), lo[j]) - e[j]);
  }
}

// acc += max(row, lo), one row of w values
template <class Ops>
inline void add_clamped_row(const typename Ops::T* row, int64_t w, const float* lo, float* acc) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<Ops, Bf16>) {
    if (w % 32 == 0) {
      for (int64_t j = 0; j < w; j += 32) {
        __m512 v0, v1;
        bf16_widen(_mm512_loadu_si512(row + j), v0, v1);
        _mm512_storeu_ps(acc + j, _mm512_add_ps(_mm512_loadu_ps(acc + j), _mm512_max_ps(v0, _mm512_loadu_ps(lo + j))));
        _mm512_storeu_ps(acc + j + 16,
                         _mm512_add_ps(_mm512_loadu_ps(acc + j + 16), _mm512_max_ps(v1, _mm512_loadu_ps(lo + j + 16))));
      }
      return;
    }
  }
#endif
  for (int64_t j = 0; j < w; ++j) acc[j] += std::max(Ops::load(row[j]), lo[j]);
}

template <class Ops>
at::Tensor normalise_impl(at::Tensor& g, const float* carried, const float* signs, const float* gamma_abs,
                          const float* beta, int64_t groups, double eps, bool centre) {
  using T = typename Ops::T;
  const int64_t v = g.size(0), w = g.size(1);
  T* x = reinterpret_cast<T*>(g.data_ptr());
  const int64_t blocks = (v + kBlockRows - 1) / kBlockRows;

  // 1. per-channel sums over vertices, one partial per block of rows (combined in double below)
  std::vector<double> partial(size_t(blocks) * 2 * w, 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kBlockRows, r1 = std::min(v, r0 + kBlockRows);
      double* S = partial.data() + b * 2 * w;
      block_sums<Ops>(x + r0 * w, r1 - r0, w, S, S + w);
    }
  });
  std::vector<double> sum_g(w, 0.0), sumsq_g(w, 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < w; ++j) {
      sum_g[j] += partial[b * 2 * w + j];
      sumsq_g[j] += partial[b * 2 * w + w + j];
    }

  // 2. statistics of g + carried, combined over groups; the factor |s| and threshold lo = -d per channel
  auto result = at::empty({2, w}, g.options().dtype(at::kFloat));
  float* scale_out = result.data_ptr<float>();
  float* offset_out = scale_out + w;
  const int64_t per_group = w / groups;
  std::vector<float> lo(w), e(w, 0.f);
  for (int64_t k = 0; k < groups; ++k) {
    double m = 0.0, s2 = 0.0;
    for (int64_t j = k * per_group; j < (k + 1) * per_group; ++j) {
      const double mg = sum_g[j] / double(v), c = carried[j];
      m += (mg + c) * signs[j];
      s2 += sumsq_g[j] / double(v) + 2.0 * c * mg + c * c;
    }
    m /= double(per_group);
    s2 /= double(per_group);
    const double rstd = 1.0 / std::sqrt(std::max(s2 - m * m, 0.0) + eps);
    for (int64_t j = k * per_group; j < (k + 1) * per_group; ++j) {
      const double gain = rstd * gamma_abs[j];
      const double shift = beta[j] - m * gain * signs[j];
      const double scale = std::max(gain, 1e-12);
      const double d = carried[j] + shift / scale;
      lo[j] = Ops::load(Ops::store(float(-d)));  // the threshold as stored: clamped entries are exactly 0 downstream
      scale_out[j] = float(scale);
    }
  }

  // 3. the centre e of max(g, lo) per channel from every 8th row (one thread: an eighth of a pass). Only its
  //    rough size matters, as it is carried exactly, but the closer the stored activations sit to zero, the finer
  //    bfloat16 stores them and the next product's output (a normal-distribution estimate from the statistics
  //    alone left 40x the error on the shipped model: its channels are far from normal).
  if (centre) {
    std::vector<float> acc(w, 0.f);
    int64_t n_sampled = 0;
    for (int64_t r = 0; r < v; r += kSampleStride, ++n_sampled) add_clamped_row<Ops>(x + r * w, w, lo.data(), acc.data());
    for (int64_t j = 0; j < w; ++j) e[j] = acc[j] / float(n_sampled);
  }
  for (int64_t j = 0; j < w; ++j) offset_out[j] = e[j] - lo[j];

  // 4. in place g <- max(g, lo) - e: the true activation is scale * (g + offset)
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kBlockRows, r1 = std::min(v, r0 + kBlockRows);
      clamp_shift_rows<Ops>(x + r0 * w, r1 - r0, w, lo.data(), e.data());
    }
  });
  return result;
}

at::Tensor normalise_(at::Tensor g, const at::Tensor& carried, const at::Tensor& signs, const at::Tensor& gamma_abs,
                      const at::Tensor& beta, int64_t groups, double eps, bool centre) {
  TORCH_CHECK(g.device().is_cpu() && g.dim() == 2 && g.is_contiguous(), "g must be a contiguous (V, W) CPU tensor");
  const int64_t w = g.size(1);
  TORCH_CHECK(groups > 0 && w % groups == 0, "channels ", w, " not divisible into ", groups, " groups");
  for (const at::Tensor* t : {&carried, &signs, &gamma_abs, &beta})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->numel() == w,
                "per-channel vectors must be contiguous float32 of length ", w);
  const float *c = carried.data_ptr<float>(), *s = signs.data_ptr<float>(), *ga = gamma_abs.data_ptr<float>(),
              *be = beta.data_ptr<float>();
  if (g.scalar_type() == at::kBFloat16) return normalise_impl<Bf16>(g, c, s, ga, be, groups, eps, centre);
  TORCH_CHECK(g.scalar_type() == at::kFloat, "g must be bfloat16 or float32");
  return normalise_impl<F32>(g, c, s, ga, be, groups, eps, centre);
}

}  // namespace

TORCH_LIBRARY(nfs_kernels, m) {
  m.def("normalise_(Tensor(a!) g, Tensor carried, Tensor signs, Tensor gamma_abs, Tensor beta, int groups, "
        "float eps, bool centre) -> Tensor");
}

TORCH_LIBRARY_IMPL(nfs_kernels, CPU, m) { m.impl("normalise_", normalise_); }
