// tess_dw_fast.cc: the conv layers' dW correlation (tess_dw.cc), bit-exact with
// the reference: for each weight row (kh, kw, ci) the positions whose trace or
// input is non-zero are listed once with (q, x 2^frac) packed as int16 halves,
// then each block of four output channels sums over the list with its int64
// sums in registers: one SMLALD per synapse and position gives both
// e_pre q + e_post x 2^frac. The sums start at 2^(shift - 1), so the shift
// rounds; while a row's sum cannot leave int32 after the shift (positions <
// 2^shift: each position adds at most 2^31 in magnitude) two 32-bit shifts
// take its result, SSAT saturates it and QADD16 adds two channels at once.
// Where this step's largest |e| and |q| bound every row's sum below 2^31 (checked
// once per step), the sums are int32 instead: eight channels at a time, SMLAD.
// Helium builds offer each call to tess_dw_mve.cc first.
#include "tess_fast.h"

#include "tess_simd.h"

#if defined(TESS_FAST)

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
namespace {
inline int64_t smlald(uint32_t x, uint32_t y, int64_t acc) { return __smlald((int16x2_t)x, (int16x2_t)y, acc); }
inline uint32_t qadd16(uint32_t x, uint32_t y) { return (uint32_t)__qadd16((int16x2_t)x, (int16x2_t)y); }
}  // namespace
#else  // the same operations in C (host tests)
namespace {
inline int64_t smlald(uint32_t x, uint32_t y, int64_t acc) {
  return acc + (int32_t)(int16_t)(x & 0xFFFFu) * (int32_t)(int16_t)(y & 0xFFFFu) +
         (int32_t)(int16_t)(x >> 16) * (int32_t)(int16_t)(y >> 16);
}
inline uint32_t qadd16(uint32_t x, uint32_t y) {
  const int32_t lo = tess_ssat16((int16_t)(x & 0xFFFFu) + (int16_t)(y & 0xFFFFu));
  const int32_t hi = tess_ssat16((int16_t)(x >> 16) + (int16_t)(y >> 16));
  return (uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16);
}
}  // namespace
#endif

namespace {

constexpr int32_t kListSize = 64;

struct Entry {
  const uint32_t *e;  // the (e_pre, e_post) pairs of the position's output channels
  uint32_t qx;        // (q, x 2^frac) of the row's input there
};

inline int32_t larger(int32_t a, int32_t b) { return a > b ? a : b; }

inline uint32_t pack16(int32_t lo, int32_t hi) { return (uint32_t)(uint16_t)lo | ((uint32_t)hi << 16); }

// sat16(sum / 2^shift): two 32-bit shifts where the result fits int32 (kNarrow, 1 <= shift <= 31).
template <bool kNarrow>
inline int32_t shifted(int64_t sum, int32_t shift) {
  if (kNarrow) {
    const uint32_t lo = (uint32_t)sum, hi = (uint32_t)(sum >> 32);
    return tess_ssat16((int32_t)((lo >> shift) | (hi << (32 - shift))));
  }
  return tess_sat16(sum >> shift);
}

// g[0..3] = sat16(g + sat16(sum / 2^shift)) for four channels, two per QADD16.
template <bool kNarrow>
inline void finish4(int16_t *g, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int32_t shift) {
  uint32_t lo, hi;
  memcpy(&lo, g, 4);
  memcpy(&hi, g + 2, 4);
  lo = qadd16(lo, pack16(shifted<kNarrow>(a0, shift), shifted<kNarrow>(a1, shift)));
  hi = qadd16(hi, pack16(shifted<kNarrow>(a2, shift), shifted<kNarrow>(a3, shift)));
  memcpy(g, &lo, 4);
  memcpy(g + 2, &hi, 4);
}

// One list of positions of a row, four channels at a time: from the rounding constant
// (first) or gsum, into g (last) or back into gsum.
template <bool kNarrow>
void correlate(const Entry *list, int32_t count, int32_t co, bool first, bool last, int32_t shift, int64_t *gsum,
               int16_t *g) {
  const int64_t round = (int64_t)1 << (shift - 1);
  for (int32_t c0 = 0; c0 < co; c0 += 4) {
    int64_t a0 = round, a1 = round, a2 = round, a3 = round;
    if (!first) {
      a0 = gsum[c0];
      a1 = gsum[c0 + 1];
      a2 = gsum[c0 + 2];
      a3 = gsum[c0 + 3];
    }
    for (int32_t i = 0; i < count; ++i) {
      const uint32_t *e = list[i].e + c0;
      const uint32_t qx = list[i].qx;
      a0 = smlald(e[0], qx, a0);
      a1 = smlald(e[1], qx, a1);
      a2 = smlald(e[2], qx, a2);
      a3 = smlald(e[3], qx, a3);
    }
    if (last) {
      finish4<kNarrow>(g + c0, a0, a1, a2, a3, shift);
    } else {
      gsum[c0] = a0;
      gsum[c0 + 1] = a1;
      gsum[c0 + 2] = a2;
      gsum[c0 + 3] = a3;
    }
  }
}

// The int32 path: eight channels at a time with SMLAD, exact where the step's values bound
// every row's sum below 2^31 (fits32).
void correlate32(const Entry *list, int32_t count, int32_t co, int32_t shift, int16_t *g) {
  const int32_t round = (int32_t)1 << (shift - 1);
  for (int32_t c0 = 0; c0 < co; c0 += 8) {
    int32_t a0 = round, a1 = round, a2 = round, a3 = round, a4 = round, a5 = round, a6 = round, a7 = round;
    for (const Entry *entry = list, *end = list + count; entry != end; ++entry) {
      const uint32_t *e = entry->e + c0;
      const uint32_t qx = entry->qx;
      a0 = tess_smlad(e[0], qx, a0);
      a1 = tess_smlad(e[1], qx, a1);
      a2 = tess_smlad(e[2], qx, a2);
      a3 = tess_smlad(e[3], qx, a3);
      a4 = tess_smlad(e[4], qx, a4);
      a5 = tess_smlad(e[5], qx, a5);
      a6 = tess_smlad(e[6], qx, a6);
      a7 = tess_smlad(e[7], qx, a7);
    }
    uint32_t w[4];
    memcpy(w, g + c0, 16);
    w[0] = qadd16(w[0], pack16(tess_ssat16(a0 >> shift), tess_ssat16(a1 >> shift)));
    w[1] = qadd16(w[1], pack16(tess_ssat16(a2 >> shift), tess_ssat16(a3 >> shift)));
    w[2] = qadd16(w[2], pack16(tess_ssat16(a4 >> shift), tess_ssat16(a5 >> shift)));
    w[3] = qadd16(w[3], pack16(tess_ssat16(a6 >> shift), tess_ssat16(a7 >> shift)));
    memcpy(g + c0, w, 16);
  }
}

// Whether every row's sum of this step stays inside int32 with its rounding: at most oh * ow
// positions, each adding |e_pre| |q| + |e_post| |x 2^frac| at most (the largest of this step).
bool fits32(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x_in,
            const tess_scratch_t *scratch) {
  const tess_learning_t *l = layer->learning;
  if (layer->co % 8 != 0 || l->grad_shift > 31 || layer->conv.oh * layer->conv.ow > kListSize) return false;
  int32_t pre = 0, post = 0, q = 0;
  for (int32_t n = 0; n < layer->n; ++n) {
    const int32_t lo = (int16_t)(scratch->e[n] & 0xFFFFu), hi = (int16_t)(scratch->e[n] >> 16);
    pre |= lo < 0 ? -lo : lo;  // an OR of magnitudes bounds their maximum within a factor of 2
    post |= hi < 0 ? -hi : hi;
  }
  for (int32_t i = 0; i < layer->nin; ++i) q |= state->q[i] < 0 ? -state->q[i] : state->q[i];
  const int64_t x = (int64_t)(layer->analog ? 128 : 1) << l->trace_frac;
  const int64_t positions = (int64_t)layer->conv.oh * layer->conv.ow, round = (int64_t)1 << (l->grad_shift - 1);
  if (positions * ((int64_t)pre * q + (int64_t)post * x) + round <= INT32_MAX) return true;
  // Past the quick bound: the exact largest values (and the input's), which a layer sized for
  // the int32 sums (the export's e limit) meets.
  pre = post = q = 0;
  int32_t input = 0;
  for (int32_t n = 0; n < layer->n; ++n) {
    const int32_t lo = (int16_t)(scratch->e[n] & 0xFFFFu), hi = (int16_t)(scratch->e[n] >> 16);
    pre = larger(pre, lo < 0 ? -lo : lo);
    post = larger(post, hi < 0 ? -hi : hi);
  }
  for (int32_t i = 0; i < layer->nin; ++i) {
    q = larger(q, state->q[i] < 0 ? -state->q[i] : state->q[i]);
    input = larger(input, x_in[i] < 0 ? -x_in[i] : x_in[i]);
  }
  return positions * ((int64_t)pre * q + (int64_t)post * ((int64_t)input << l->trace_frac)) + round <= INT32_MAX;
}

template <bool kNarrow>
void conv_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
             const tess_scratch_t *scratch) {
  const tess_conv_shape_t &s = layer->conv;
  const tess_learning_t *l = layer->learning;
  const int32_t one = 1 << l->trace_frac, shift = l->grad_shift;
  const bool narrow32 = fits32(layer, state, x, scratch);
  Entry list[kListSize];
  // Per tap (kh, kw): the positions it reaches, with their outputs' e and their input's offset,
  // listed once for all ci (when at most kListSize; else each ci walks the map again).
  Entry taps[kListSize];
  for (int32_t kh = 0; kh < s.k; ++kh) {
    for (int32_t kw = 0; kw < s.k; ++kw) {
      int32_t reach = 0;
      bool all = true;
      for (int32_t oy = 0; oy < s.oh && all; ++oy) {
        const int32_t iy = oy * s.stride + kh - s.pad_top;
        if (iy < 0 || iy >= s.h) continue;
        for (int32_t ox = 0; ox < s.ow; ++ox) {
          const int32_t ix = ox * s.stride + kw - s.pad_left;
          if (ix < 0 || ix >= s.w) continue;
          if (reach == kListSize) {
            all = false;
            break;
          }
          taps[reach++] = {scratch->e + (oy * s.ow + ox) * s.co, (uint32_t)((iy * s.w + ix) * s.ci)};
        }
      }
      for (int32_t ci = 0; ci < s.ci; ++ci) {
        int16_t *g = state->g + ((kh * s.k + kw) * s.ci + ci) * s.co;
        int32_t count = 0;
        bool first = true;
        if (all) {
          for (int32_t i = 0; i < reach; ++i) {
            const int32_t in = (int32_t)taps[i].qx + ci;
            const int32_t qv = state->q[in], xv = x[in] * one;
            if ((qv | xv) == 0) continue;
            list[count++] = {taps[i].e, pack16(qv, xv)};
          }
          if (narrow32) {
            if (count > 0) correlate32(list, count, s.co, shift, g);
          } else if (count > 0) {
            correlate<kNarrow>(list, count, s.co, true, true, shift, scratch->gsum, g);
          }
          continue;
        }
        for (int32_t oy = 0; oy < s.oh; ++oy) {
          const int32_t iy = oy * s.stride + kh - s.pad_top;
          if (iy < 0 || iy >= s.h) continue;
          for (int32_t ox = 0; ox < s.ow; ++ox) {
            const int32_t ix = ox * s.stride + kw - s.pad_left;
            if (ix < 0 || ix >= s.w) continue;
            const int32_t in = (iy * s.w + ix) * s.ci + ci;
            const int32_t qv = state->q[in], xv = x[in] * one;
            if (qv == 0 && xv == 0) continue;
            list[count++] = {scratch->e + (oy * s.ow + ox) * s.co, pack16(qv, xv)};
            if (count == kListSize && !narrow32) {
              correlate<kNarrow>(list, count, s.co, first, false, shift, scratch->gsum, g);
              count = 0;
              first = false;
            }
          }
        }
        // No position at all: round(0) = 0 leaves the row as it is.
        if (narrow32) {
          if (count > 0) correlate32(list, count, s.co, shift, g);
        } else if (count > 0 || !first) correlate<kNarrow>(list, count, s.co, first, true, shift, scratch->gsum, g);
      }
    }
  }
}

}  // namespace

extern "C" {

int32_t tess_fast_accumulate_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                                const tess_scratch_t *scratch) {
#if defined(TESS_MVE)
  if (tess_mve_accumulate_dw(layer, state, x, scratch)) return 1;
#endif
  const int32_t frac = layer->learning->trace_frac, shift = layer->learning->grad_shift;
  // x 2^frac must be an int16 half: int8 inputs need frac <= 8, spikes frac <= 14.
  if (layer->kind != TESS_LAYER_CONV || layer->co % 4 != 0 || frac > (layer->analog ? 8 : 14) || shift < 1 ||
      shift > 62) {
    return 0;
  }
  if (shift <= 31 && (int64_t)layer->conv.oh * layer->conv.ow < ((int64_t)1 << shift)) {
    conv_dw<true>(layer, state, x, scratch);
  } else {
    conv_dw<false>(layer, state, x, scratch);
  }
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_fast_accumulate_dw(const tess_spiking_t *, const tess_spiking_state_t *, const int8_t *,
                                const tess_scratch_t *) {
  return 0;
}

}  // extern "C"

#endif
