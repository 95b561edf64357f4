// tess_fire_fast.cc: the LIF update (tess_spiking_fire) in 32-bit arithmetic
// where the bounds allow it, bit-exact with the reference's 64-bit one, channel
// by channel with each channel's shift class decided once:
//  - rescale(acc, mult, shift) for shift >= 33 is (hi + 2^(shift-33)) >> (shift-32)
//    with hi the high word of acc * mult (the low word cannot change the floor),
//    and |hi| <= 2^30 leaves no room for saturation; for shift <= 32, a sum below
//    2^(shift-1) is scaled by 2^(32-shift) and rounded by SMMULR, others go
//    through tess_rescale_fast;
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

// u = sat16(leak + current) with |u - r o| <= 2^16 and gamma <= 2^15 (the product and its rounding fit int32);
// kBounded: |current| <= 2^30, so leak + current cannot overflow.
template <bool kBounded>
inline void lif(int16_t *u, uint8_t *o, int32_t i, int32_t current, int32_t reset, int32_t gamma, int32_t threshold) {
  const int32_t leak = ((u[i] - reset * o[i]) * gamma + (1 << 14)) >> 15;
  const int32_t v = tess_ssat16(kBounded ? leak + current : saturating_add(leak, current));
  u[i] = (int16_t)v;
  o[i] = v >= threshold ? 1 : 0;
}

}  // namespace

extern "C" {

int32_t tess_fast_fire(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *acc) {
  const int32_t gamma = layer->gamma, reset = layer->reset_amount, threshold = layer->threshold;
  if (gamma < 0 || gamma > 32768 || reset < 0 || reset > 32768) return 0;
  const int32_t n = layer->n, channels = layer->co;
  int16_t *u = state->u;
  uint8_t *o = state->o;
  // Channel by channel, so each channel's multiplier and shift are loaded (and classified) once.
  for (int32_t c = 0; c < channels; ++c) {
    const int32_t mult = layer->current_mult[c], shift = layer->current_shift[c];
    if (shift >= 33) {
      const int32_t round = 1 << (shift - 33), down = shift - 32;
      for (int32_t i = c; i < n; i += channels) {
        const int32_t current = ((int32_t)(((int64_t)acc[i] * mult) >> 32) + round) >> down;
        lif<true>(u, o, i, current, reset, gamma, threshold);
      }
    } else if (shift >= 1) {
      // |acc| < 2^(shift-1) (every spike sum): acc 2^(32-shift) fits int32 and SMMULR's rounding at
      // bit 31 is the rounding at bit shift-1, with |current| < 2^30; wider sums take the 64-bit way.
      const int32_t up = 32 - shift;
      for (int32_t i = c; i < n; i += channels) {
        const int32_t a = acc[i], scaled = (int32_t)((uint32_t)a << up);
        if ((scaled >> up) == a) {
          lif<true>(u, o, i, tess_smmulr(scaled, mult), reset, gamma, threshold);
        } else {
          lif<false>(u, o, i, tess_rescale_fast(a, mult, shift), reset, gamma, threshold);
        }
      }
    } else {
      for (int32_t i = c; i < n; i += channels) {
        lif<false>(u, o, i, tess_rescale_fast(acc[i], mult, shift), reset, gamma, threshold);
      }
    }
  }
  return 1;
}

int32_t tess_fast_traces(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t t) {
  const tess_learning_t *l = layer->learning;
  const int32_t lambda_pre = l->lambda_pre, lambda_post = l->lambda_post, scale = layer->psi_scale;
  if (lambda_pre < 0 || lambda_pre > 32768 || lambda_post < 0 || lambda_post > 32768 || scale < 0 ||
      scale > (1 << 19) || l->trace_frac > 16) {
    return 0;
  }
  // |q| lambda <= 2^30 and |x| 2^frac <= 2^23: int32 throughout.
  const int32_t frac = l->trace_frac;
  int16_t *q = state->q;
  for (int32_t i = 0; i < layer->nin; ++i) {
    q[i] = (int16_t)tess_ssat16(((q[i] * lambda_pre + (1 << 14)) >> 15) + x[i] * (1 << frac));
  }
  if (l->alpha_post == 0) return 1;
  const int32_t threshold = layer->threshold;
  int16_t *h = state->h;
  for (int32_t n = 0; n < layer->n; ++n) {
    int32_t past = 0;  // h[0] = 0: no past membrane at the first step
    if (t > 0) {
      const int32_t distance = state->u[n] > threshold ? state->u[n] - threshold : threshold - state->u[n];
      const int32_t rest = (1 << TESS_U_FRAC) - distance;  // psi = scale max(1 - |u - v_th|, 0), rest * scale <= 2^30
      past = rest > 0 ? (rest * scale + (1 << (TESS_U_FRAC - 1))) >> TESS_U_FRAC : 0;
    }
    h[n] = (int16_t)tess_ssat16(((h[n] * lambda_post + (1 << 14)) >> 15) + past);
  }
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_fast_fire(const tess_spiking_t *, const tess_spiking_state_t *, const int32_t *) { return 0; }

int32_t tess_fast_traces(const tess_spiking_t *, const tess_spiking_state_t *, const int8_t *, int32_t) { return 0; }

}  // extern "C"

#endif
