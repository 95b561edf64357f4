// tess_update_fast.cc: the once-per-sample SGD step (tess_update.cc) without
// 64-bit arithmetic where the bounds allow it, bit-exact with the reference:
//  - a zero accumulator (or one whose rescaled step is 0) leaves the weight as
//    it is: (0 + r) >> 16 = 0 for any 16-bit draw r, so its draw is skipped
//    (the generator is counter-based: draw k is the same whether or not draw
//    k - 1 was taken);
//  - rescale for shift >= 33 uses the high word only (tess_fast.h);
//  - channel by channel, so each channel's multiplier and shift are loaded once.
#include "tess_fast.h"

#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_FAST)

namespace {

// The new weight for a non-zero step delta: clamp(w + floor((r - delta) / 2^16), +-127), r the 16-bit draw.
inline int8_t step_weight(int8_t w, int32_t delta, uint32_t draw) {
  const int32_t random = (int32_t)(draw & 0xFFFFu);
  const int32_t step = delta > -0x7FFF0000 && delta < 0x7FFF0000 ? (random - delta) >> 16
                                                                    : (int32_t)tess_sgd_step(delta, draw);
  const int32_t value = w + step;
  return (int8_t)(value > TESS_WEIGHT_MAX ? TESS_WEIGHT_MAX : (value < -TESS_WEIGHT_MAX ? -TESS_WEIGHT_MAX : value));
}

}  // namespace

extern "C" {

int32_t tess_fast_update(int8_t *w, int32_t *g, int32_t count, int32_t channels, const int32_t *mult,
                         const int8_t *shift, uint32_t seed, uint32_t counter) {
  // Channel by channel: each channel's multiplier and shift class are decided once, and the
  // generator position seed + (counter + i) * step advances by channels * step.
  const uint32_t advance = (uint32_t)channels * TESS_RANDOM_STEP;
  for (int32_t c = 0; c < channels; ++c) {
    const int32_t m = mult[c], s = shift[c];
    uint32_t position = seed + (counter + (uint32_t)c) * TESS_RANDOM_STEP;
    if (s >= 33) {  // |delta| < 2^30: (r - delta) >> 16 in int32
      const int32_t round = 1 << (s - 33), down = s - 32;
      for (int32_t i = c; i < count; i += channels, position += advance) {
        const int32_t gi = g[i];
        if (gi == 0) continue;
        g[i] = 0;
        const int32_t delta = ((int32_t)(((int64_t)gi * m) >> 32) + round) >> down;
        if (delta == 0) continue;
        const int32_t value = w[i] + (((int32_t)(tess_mix32(position) & 0xFFFFu) - delta) >> 16);
        w[i] = (int8_t)(value > TESS_WEIGHT_MAX ? TESS_WEIGHT_MAX : (value < -TESS_WEIGHT_MAX ? -TESS_WEIGHT_MAX : value));
      }
      continue;
    }
    if (s >= 1 && s <= 31) {  // round into the low word, join the words, saturate (tess_rescale_fast)
      const uint32_t round = 1u << (s - 1);
      for (int32_t i = c; i < count; i += channels, position += advance) {
        const int32_t gi = g[i];
        if (gi == 0) continue;
        g[i] = 0;
        const int64_t product = (int64_t)gi * m;
        const uint32_t lo = (uint32_t)product, rounded = lo + round;
        const int32_t hi = (int32_t)(product >> 32) + (rounded < lo ? 1 : 0);
        const int32_t top = hi >> (s - 1);
        const int32_t delta = top == 0 || top == -1 ? (int32_t)(((uint32_t)hi << (32 - s)) | (rounded >> s))
                                                    : (hi < 0 ? INT32_MIN : INT32_MAX);
        if (delta != 0) w[i] = step_weight(w[i], delta, tess_mix32(position));
      }
      continue;
    }
    for (int32_t i = c; i < count; i += channels, position += advance) {
      if (g[i] == 0) continue;
      const int32_t delta = tess_rescale_fast(g[i], m, s);
      g[i] = 0;
      if (delta != 0) w[i] = step_weight(w[i], delta, tess_mix32(position));
    }
  }
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_fast_update(int8_t *, int32_t *, int32_t, int32_t, const int32_t *, const int8_t *, uint32_t, uint32_t) {
  return 0;
}

}  // extern "C"

#endif
