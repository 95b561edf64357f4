// tess_fire_fast.cc: the LIF update (tess_spiking_fire) in 32-bit arithmetic
// where the bounds allow it, bit-exact with the reference's 64-bit one, channel
// by channel with each channel's shift class decided once:
//  - rescale(acc, mult, shift) for shift >= 33 is (hi + 2^(shift-33)) >> (shift-32)
//    with hi the high word of acc * mult (the low word cannot change the floor),
//    and |hi| <= 2^30 leaves no room for saturation; for shift <= 32, a sum below
//    2^(shift-1) is scaled by 2^(32-shift) and rounded by SMMULR, others go
//    through tess_rescale_fast;
//  - the leak (u - r o) * gamma fits int32 when 0 <= gamma, r <= 2^15.
// The traces (tess_spiking_traces) follow in int32 under their own bounds; on
// Helium both run four neurons a vector.
#include "tess_fast.h"

#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>
#endif

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

// Channel c at every position (neurons c, c + channels, ...): its multiplier and shift loaded and classified once.
void fire_channel(const tess_spiking_t *layer, int16_t *u, uint8_t *o, const int32_t *acc, int32_t c) {
  const int32_t gamma = layer->gamma, reset = layer->reset_amount, threshold = layer->threshold;
  const int32_t n = layer->n, channels = layer->co;
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

#if defined(TESS_MVE)
// Helium: four channels of one position a vector (positions inner, channels outer, so the
// multipliers and shifts are loaded once). All four shifts >= 33 (kHigh): VMULH then VRSHL
// by 32 - shift, which is (hi + 2^(shift-33)) >> (shift-32); all in 1..32: sums below
// 2^(shift-1) scaled by 2^(32-shift) and rounded by VRMULH (a position with a wider sum
// takes the scalar way). The leak (u - r o) gamma fits int32 and VRSHR #15 rounds it;
// |current| < 2^30, so leak + current needs no saturation before the int16 clamp (a
// saturating shift up by 16 and back). kWhole: four channels, no predication.
template <bool kWhole, bool kHigh>
void fire_lanes(const tess_spiking_t *layer, int16_t *u, uint8_t *o, const int32_t *acc, int32_t c0) {
  const int32_t channels = layer->co, lanes = kWhole ? 4 : channels - c0, n = layer->n;
  const int32_t *mults = layer->current_mult + c0;
  const int8_t *shifts = layer->current_shift + c0;
  const mve_pred16_t p = vctp32q((uint32_t)lanes);
  const int32x4_t mult = kWhole ? vldrwq_s32(mults) : vldrwq_z_s32(mults, p);
  const int32x4_t shift = kWhole ? vldrbq_s32(shifts) : vldrbq_z_s32(shifts, p);
  // 32 - shift: kHigh, a right shift by shift - 32 (a negative VRSHL); else the scaling up
  const int32x4_t amount = vsubq_s32(vdupq_n_s32(32), shift), back = vnegq_s32(amount);
  const int32_t reset = layer->reset_amount, gamma = layer->gamma, threshold = layer->threshold;
  // u >= v_th with u in int16: v_th clamped to [-2^15, 2^15] keeps every answer and u - v_th in int32
  const int32_t edge = threshold < -32768 ? -32768 : (threshold > 32768 ? 32768 : threshold);
  for (int32_t i = c0; i < n; i += channels) {
    const int32x4_t a = kWhole ? vldrwq_s32(acc + i) : vldrwq_z_s32(acc + i, p);
    int32x4_t current;
    if (kHigh) {
      current = vrshlq_s32(vmulhq_s32(a, mult), amount);
    } else {
      const int32x4_t scaled = vshlq_s32(a, amount);
      const int32x4_t rebuilt = vshlq_s32(scaled, back);
      if ((kWhole ? vcmpneq_s32(rebuilt, a) : vcmpneq_m_s32(rebuilt, a, p)) != 0) {  // a sum of 2^(shift-1) or more
        for (int32_t l = 0; l < lanes; ++l) {
          lif<false>(u, o, i + l, tess_rescale_fast(acc[i + l], mults[l], shifts[l]), reset, gamma, threshold);
        }
        continue;
      }
      current = vrmulhq_s32(scaled, mult);
    }
    const int32x4_t before = kWhole ? vldrhq_s32(u + i) : vldrhq_z_s32(u + i, p);
    const uint32x4_t fired = kWhole ? vldrbq_u32(o + i) : vldrbq_z_u32(o + i, p);
    const int32x4_t kept = vsubq_s32(before, vmulq_n_s32(vreinterpretq_s32_u32(fired), reset));
    const int32x4_t v = tess_mve_ssat16(vaddq_s32(vrshrq_n_s32(vmulq_n_s32(kept, gamma), 15), current));
    const int32x4_t spikes = vaddq_n_s32(vshrq_n_s32(vsubq_n_s32(v, edge), 31), 1);  // 1 when v >= v_th
    if (kWhole) {
      vstrhq_s32(u + i, v);
      vstrbq_s32(reinterpret_cast<int8_t *>(o + i), spikes);
    } else {
      vstrhq_p_s32(u + i, v, p);
      vstrbq_p_s32(reinterpret_cast<int8_t *>(o + i), spikes, p);
    }
  }
}

// Channels c0 .. c0 + 4 (fewer at the end): one vector loop when their shifts share a class.
template <bool kWhole>
void fire_block(const tess_spiking_t *layer, int16_t *u, uint8_t *o, const int32_t *acc, int32_t c0) {
  const int32_t lanes = kWhole ? 4 : layer->co - c0;
  const int8_t *shifts = layer->current_shift + c0;
  bool high = true, low = true;
  for (int32_t l = 0; l < lanes; ++l) {
    high = high && shifts[l] >= 33;
    low = low && shifts[l] >= 1 && shifts[l] <= 32;
  }
  if (high) {
    fire_lanes<kWhole, true>(layer, u, o, acc, c0);
  } else if (low) {
    fire_lanes<kWhole, false>(layer, u, o, acc, c0);
  } else {
    for (int32_t l = 0; l < lanes; ++l) fire_channel(layer, u, o, acc, c0 + l);
  }
}

// tess_fast_traces on Helium, four traces a vector under its bounds (int32 throughout):
// VRSHR #15 is the rounding of q lambda / 2^15. Tails are predicated.
void traces_mve(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t t) {
  const tess_learning_t *l = layer->learning;
  const int32_t lambda_pre = l->lambda_pre, lambda_post = l->lambda_post, scale = layer->psi_scale;
  const int32_t frac = l->trace_frac;
  int16_t *q = state->q;
  for (int32_t i = 0; i < layer->nin; i += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(layer->nin - i));
    const int32x4_t decayed = vrshrq_n_s32(vmulq_n_s32(vldrhq_z_s32(q + i, p), lambda_pre), 15);
    const int32x4_t sum = vaddq_s32(decayed, vshlq_r_s32(vldrbq_z_s32(x + i, p), frac));
    vstrhq_p_s32(q + i, tess_mve_ssat16(sum), p);
  }
  if (l->alpha_post == 0) return;
  int16_t *h = state->h;
  const int32x4_t threshold = vdupq_n_s32(layer->threshold);
  for (int32_t n = 0; n < layer->n; n += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(layer->n - n));
    int32x4_t past = vdupq_n_s32(0);  // h[0] = 0: no past membrane at the first step
    if (t > 0) past = tess_mve_psi(vldrhq_z_s32(state->u + n, p), threshold, scale);  // rest * scale <= 2^30
    const int32x4_t sum = vaddq_s32(vrshrq_n_s32(vmulq_n_s32(vldrhq_z_s32(h + n, p), lambda_post), 15), past);
    vstrhq_p_s32(h + n, tess_mve_ssat16(sum), p);
  }
}
#endif

}  // namespace

extern "C" {

int32_t tess_fast_fire(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *acc) {
  const int32_t gamma = layer->gamma, reset = layer->reset_amount;
  if (gamma < 0 || gamma > 32768 || reset < 0 || reset > 32768) return 0;
#if defined(TESS_MVE)
  int32_t c = 0;
  for (; c + 4 <= layer->co; c += 4) fire_block<true>(layer, state->u, state->o, acc, c);
  if (c < layer->co) fire_block<false>(layer, state->u, state->o, acc, c);
#else
  for (int32_t c = 0; c < layer->co; ++c) fire_channel(layer, state->u, state->o, acc, c);
#endif
  return 1;
}

int32_t tess_fast_traces(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t t) {
  const tess_learning_t *l = layer->learning;
  const int32_t lambda_pre = l->lambda_pre, lambda_post = l->lambda_post, scale = layer->psi_scale;
  if (lambda_pre < 0 || lambda_pre > 32768 || lambda_post < 0 || lambda_post > 32768 || scale < 0 ||
      scale > (1 << 19) || l->trace_frac > 16) {
    return 0;
  }
#if defined(TESS_MVE)
  traces_mve(layer, state, x, t);
#else
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
#endif
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_fast_fire(const tess_spiking_t *, const tess_spiking_state_t *, const int32_t *) { return 0; }

int32_t tess_fast_traces(const tess_spiking_t *, const tess_spiking_state_t *, const int8_t *, int32_t) { return 0; }

}  // extern "C"

#endif
