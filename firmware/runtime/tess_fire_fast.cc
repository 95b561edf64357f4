// tess_fire_fast.cc: the LIF update (tess_spiking_fire) in 32-bit arithmetic
// where the bounds allow it, bit-exact with the reference's 64-bit one:
//  - rescale(acc, mult, shift) for shift >= 33 is (hi + 2^(shift-33)) >> (shift-32)
//    with hi the high word of acc * mult (the low word cannot change the floor),
//    and |hi| <= 2^30 leaves no room for saturation;
//  - the leak (u - r o) * gamma fits int32 when 0 <= gamma, r <= 2^15.
#include "tess_fast.h"

#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_FAST)

namespace {

inline int32_t saturating_add(int32_t a, int32_t b) {
  int32_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return b > 0 ? INT32_MAX : INT32_MIN;
  return sum;
}

inline int16_t sat16_32(int32_t v) { return v > INT16_MAX ? INT16_MAX : (v < INT16_MIN ? INT16_MIN : (int16_t)v); }

}  // namespace

extern "C" {

int32_t tess_fast_fire(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *acc) {
  const int32_t gamma = layer->gamma, reset = layer->reset_amount, threshold = layer->threshold;
  if (gamma < 0 || gamma > 32768 || reset < 0 || reset > 32768) return 0;
  const int32_t *mult = layer->current_mult;
  const int8_t *shift = layer->current_shift;
  const int32_t n = layer->n, channels = layer->co;
  int16_t *u = state->u;
  uint8_t *o = state->o;
  int32_t co = 0;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t current = tess_rescale_fast(acc[i], mult[co], shift[co]);
    // |u - r o| <= 2^15 + 2^15 and gamma <= 2^15: the product and its rounding fit int32
    const int32_t leak = ((u[i] - reset * o[i]) * gamma + (1 << 14)) >> 15;
    u[i] = sat16_32(saturating_add(leak, current));
    o[i] = u[i] >= threshold ? 1 : 0;
    if (++co == channels) co = 0;
  }
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_fast_fire(const tess_spiking_t *, const tess_spiking_state_t *, const int32_t *) { return 0; }

}  // extern "C"

#endif
