// tess_update_mve.cc: the once-per-sample SGD step (tess_update.cc) on Helium
// (MVE, Cortex-M55), bit-exact with the reference; tess_update_fast.cc calls
// it first in an MVE build and keeps the layers it declines. Eight weights a
// step, their four generator draws on four u32 lanes:
//  - weight i takes the 16-bit half i % 2 of draw counter + i / 2, so for i even
//    the draws of weights i .. i + 7 are lanes 0..3, the even weights' halves the
//    bottom ones (VMOVLB.U16) and the odd weights' the top ones (VSHR #16);
//  - it takes the export's multipliers, |mult| < 2^15 and 1 <= shift <= 31 in
//    every channel: an int16 accumulator times its multiplier is an exact int32
//    (VMULLB / VMULLT: the even and the odd weights' products) that VRSHL by
//    -shift rounds (inside the instruction, which cannot overflow); |delta| <=
//    2^29, so (r - delta) >> 16 is exact in int32 and VSHRNB / VSHRNT put it back
//    in the weights' int16 lanes;
//  - a zero accumulator gives delta 0 and step (r - 0) >> 16 = 0 for a 16-bit r:
//    no lane needs a branch; every weight is clamped to +-127 as the reference does;
//  - weight i is channel i % channels: with channels dividing 8 every group of
//    eight has the same lane constants, with channels a multiple of 8 group
//    c0 .. c0 + 7 of each row does, so the groups run column by column (the
//    constants built once), row by row; a short last group is predicated (VCTP);
//  - the readout's int32 accumulators (one channel): VLD2 splits the even and the
//    odd weights, VRMULH rounds the product (update32); a group with an
//    accumulator past its bound, or a short last one (VLD2 takes no predicate),
//    goes to the reference.
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>

namespace {

// The lanes of the groups whose first weight is channel `first` (first % 8 == 0): lane j's
// multiplier, and -shift of weight j as int16 lane j, so int32 lane k holds weight 2k's in its
// bottom half and weight 2k + 1's in its top half (VRSHL by a negative amount is the rounded
// right shift, and it reads the bottom byte of each lane: the odd weights' take a VSHR #16).
struct Lanes {
  int16x8_t mult;
  int32x4_t down;
};

Lanes lanes_of(const int32_t *mult, const int8_t *shift, int32_t first, int32_t channels) {
  int16_t m[8], down[8];
  for (int32_t j = 0; j < 8; ++j) {
    const int32_t c = (first + j) % channels;
    m[j] = (int16_t)mult[c];
    down[j] = (int16_t)-shift[c];
  }
  return {vldrhq_s16(m), vreinterpretq_s32_s16(vldrhq_s16(down))};
}

// The eight weights of a group (kTail: those of predicate p) from their steps' deltas (the even
// and the odd weights') and the group's four draw positions. Forced inline, as group16: a call
// passes the vectors through the stack.
template <bool kTail>
__attribute__((always_inline)) inline void step_weights(int8_t *w, mve_pred16_t p, int32x4_t delta_even,
                                                        int32x4_t delta_odd, uint32x4_t position) {
  // lowbias32 (tess_mix32) but its last x ^= x >> 16: that leaves the top half as it is and
  // makes the bottom half the xor of both
  uint32x4_t x = veorq_u32(position, vshrq_n_u32(position, 16));
  x = vmulq_n_u32(x, 0x7FEB352Du);
  x = veorq_u32(x, vshrq_n_u32(x, 15));
  x = vmulq_n_u32(x, 0x846CA68Bu);
  const uint32x4_t high = vshrq_n_u32(x, 16);
  const uint32x4_t low = vmovlbq_u16(vreinterpretq_u16_u32(veorq_u32(x, high)));
  // steps (r - delta) >> 16, |step| <= 2^14: the top halves of the int32 differences
  int16x8_t steps = vshrnbq_n_s32(vreinterpretq_s16_u32(high), vsubq_s32(vreinterpretq_s32_u32(low), delta_even), 16);
  steps = vshrntq_n_s32(steps, vsubq_s32(vreinterpretq_s32_u32(high), delta_odd), 16);
  const int16x8_t sum = vaddq_s16(kTail ? vldrbq_z_s16(w, p) : vldrbq_s16(w), steps);
  // clamp to +-127: saturated to int8 in the bottom byte of each lane (VQMOVNB; the top bytes
  // are not stored), then -128 to -127 by two saturating negations
  const int8x16_t weights = vqnegq_s8(vqnegq_s8(vqmovnbq_s16(vreinterpretq_s8_s16(steps), sum)));
  if (kTail) {
    vstrbq_p_s16(w, vreinterpretq_s16_s8(weights), p);
  } else {
    vstrbq_s16(w, vreinterpretq_s16_s8(weights));
  }
}

// A group of int16 accumulators (kTail: n < 8).
template <bool kTail>
__attribute__((always_inline)) inline void group16(int8_t *w, int16_t *g, int32_t n, const Lanes &l,
                                                   uint32x4_t position) {
  const mve_pred16_t p = vctp16q((uint32_t)n);
  const int16x8_t acc = kTail ? vldrhq_z_s16(g, p) : vldrhq_s16(g);
  if (kTail) {
    vstrhq_p_s16(g, vdupq_n_s16(0), p);
  } else {
    vstrhq_s16(g, vdupq_n_s16(0));
  }
  const int32x4_t even = vrshlq_s32(vmullbq_int_s16(acc, l.mult), l.down);
  const int32x4_t odd = vrshlq_s32(vmulltq_int_s16(acc, l.mult), vshrq_n_s32(l.down, 16));
  step_weights<kTail>(w, p, even, odd, position);
}

// int16 accumulators: channels dividing 8 (every group of eight has the same lanes) or a
// multiple of 8 (group c0 .. c0 + 7 of each row has): column by column, the lanes built once.
void update16(int8_t *w, int16_t *g, int32_t count, int32_t channels, const int32_t *mult, const int8_t *shift,
              uint32_t seed, uint32_t counter) {
  const int32_t stride = channels > 8 ? channels : 8;  // weights from a group to the next with its lanes
  const uint32_t advance = (uint32_t)(stride / 2) * TESS_RANDOM_STEP;
  const uint32x4_t draws = vmulq_n_u32(vidupq_n_u32(0u, 1), TESS_RANDOM_STEP);  // lane k: draw k of the group
  for (int32_t first = 0; first < stride && first < count; first += 8) {
    const Lanes l = lanes_of(mult, shift, first, channels);
    uint32x4_t position = vaddq_n_u32(draws, seed + (counter + (uint32_t)(first / 2)) * TESS_RANDOM_STEP);
    const int32_t full = count - first >= 8 ? (count - first - 8) / stride + 1 : 0;  // groups of eight
    int8_t *wp = w + first;
    int16_t *gp = g + first;
    for (int32_t k = 0; k < full; ++k, wp += stride, gp += stride, position = vaddq_n_u32(position, advance)) {
      group16<false>(wp, gp, 8, l, position);
    }
    const int32_t rest = count - first - full * stride;  // a short last group (below 8)
    if (rest > 0) group16<true>(wp, gp, rest, l, position);
  }
}

// int32 accumulators of one channel (the readout): delta = VRMULH(g << up, mult << (32 - shift
// - up)) with up = 16 - shift (0 past shift 16), (g mult 2^(32 - shift) + 2^31) >> 32, the rounded
// g mult / 2^shift; both factors fit int32 while |g| < 2^(31 - up), and |delta| < 2^30. A group
// with a larger |g|, and the last one when short (VLD2 takes no predicate), go to the reference.
void update32(int8_t *w, int32_t *g, int32_t count, int32_t mult, int32_t shift, uint32_t seed, uint32_t counter) {
  const int32_t up = shift < 16 ? 16 - shift : 0;
  const uint32_t limit = (1u << (31 - up)) - 1u;
  const int32x4_t scaled = vdupq_n_s32((int32_t)((uint32_t)mult << (32 - shift - up))), ups = vdupq_n_s32(up);
  const int8_t shift8 = (int8_t)shift;
  const uint32_t advance = 4u * TESS_RANDOM_STEP;
  const uint32x4_t draws = vmulq_n_u32(vidupq_n_u32(0u, 1), TESS_RANDOM_STEP);  // lane k: draw k of the group
  uint32x4_t position = vaddq_n_u32(draws, seed + counter * TESS_RANDOM_STEP);
  int32_t i = 0;
  while (i < count) {
    for (; i + 8 <= count; i += 8, position = vaddq_n_u32(position, advance)) {
      const int32x4x2_t acc = vld2q_s32(g + i);  // the even and the odd weights'
      if (vmaxavq_s32(vmaxavq_s32(0u, acc.val[0]), acc.val[1]) > limit) break;
      vstrwq_s32(g + i, vdupq_n_s32(0));
      vstrwq_s32(g + i + 4, vdupq_n_s32(0));
      const int32x4_t even = vrmulhq_s32(vshlq_s32(acc.val[0], ups), scaled);
      const int32x4_t odd = vrmulhq_s32(vshlq_s32(acc.val[1], ups), scaled);
      step_weights<false>(w + i, 0, even, odd, position);
    }
    if (i == count) break;
    const int32_t n = count - i < 8 ? count - i : 8;
    tess_sgd_update32(w + i, g + i, n, 1, &mult, &shift8, seed, counter + (uint32_t)(i / 2));
    i += 8;
    position = vaddq_n_u32(position, advance);
  }
}

// The export's multipliers: |mult| < 2^15 and 1 <= shift <= 31 for every channel.
bool small(int32_t channels, const int32_t *mult, const int8_t *shift) {
  for (int32_t c = 0; c < channels; ++c) {
    if (mult[c] <= -32768 || mult[c] >= 32768 || shift[c] < 1 || shift[c] > 31) return false;
  }
  return true;
}

}  // namespace

extern "C" {

int32_t tess_mve_update(int8_t *w, int16_t *g, int32_t count, int32_t channels, const int32_t *mult,
                        const int8_t *shift, uint32_t seed, uint32_t counter) {
  if (channels < 1 || (8 % channels != 0 && channels % 8 != 0) || !small(channels, mult, shift)) return 0;
  update16(w, g, count, channels, mult, shift, seed, counter);
  return 1;
}

int32_t tess_mve_update32(int8_t *w, int32_t *g, int32_t count, int32_t channels, const int32_t *mult,
                          const int8_t *shift, uint32_t seed, uint32_t counter) {
  if (channels != 1 || !small(1, mult, shift)) return 0;
  update32(w, g, count, mult[0], shift[0], seed, counter);
  return 1;
}

}  // extern "C"

#endif
