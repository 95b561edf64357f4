/*
 * tess_simd.h: the few SIMD operations the fast kernels are built from, and
 * which path this build takes (chosen at compile time):
 *
 *   __ARM_FEATURE_DSP (Cortex-M4/M7/M33/M55)  SXTAB16 / SXTB16 / SMLABB / SMLATB / SMLAD / SMMULR
 *   __ARM_FEATURE_MVE (Cortex-M55)            also Helium (TESS_MVE): tess_mve_* below and *_mve.cc
 *   TESS_KERNELS_EMULATE_DSP (host tests)     the same operations in plain C
 *   TESS_KERNELS_REFERENCE, or neither         no fast path: the reference kernels
 *
 * SXTAB16 adds two sign-extended int8 lanes (bytes 0 and 2, or 1 and 3 with
 * ROR #8) to the two int16 halves of a word, each half on its own (modulo
 * 2^16): a binary spike's weight row is added 2 channels per instruction.
 * The kernels flush these int16 lanes into int32 before a sum can leave the
 * int16 range, so the results equal the reference bit for bit.
 */
#ifndef TESS_SIMD_H
#define TESS_SIMD_H

#include <stdint.h>
#include <string.h>

#if !defined(TESS_KERNELS_REFERENCE) && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TESS_FAST 1
#include <arm_acle.h>
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TESS_MVE 1 /* spike currents on Helium: tess_forward_mve.cc */
#endif

static inline uint32_t tess_sxtab16(uint32_t acc, uint32_t w) { return __sxtab16(acc, w); }
static inline uint32_t tess_sxtab16_ror8(uint32_t acc, uint32_t w) {
  uint32_t out;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(out) : "r"(acc), "r"(w));
  return out;
}
static inline uint32_t tess_sxtb16(uint32_t w) { return __sxtb16(w); }
static inline uint32_t tess_sxtb16_ror8(uint32_t w) {
  uint32_t out;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(out) : "r"(w));
  return out;
}
/* acc + bottom (top) int16 half of x times the bottom int16 half of y. */
static inline int32_t tess_smlabb(uint32_t x, int32_t y, int32_t acc) { return __smlabb((int32_t)x, y, acc); }
static inline int32_t tess_smlatb(uint32_t x, int32_t y, int32_t acc) { return __smlatb((int32_t)x, y, acc); }
/* v saturated to int16. */
static inline int32_t tess_ssat16(int32_t v) { return __ssat(v, 16); }
/* acc + x.lo * y.lo + x.hi * y.hi (int16 halves). */
static inline int32_t tess_smlad(uint32_t x, uint32_t y, int32_t acc) { return __smlad((int16x2_t)x, (int16x2_t)y, acc); }
/* (x * y + 2^31) >> 32: the product's high word, rounded. */
static inline int32_t tess_smmulr(int32_t x, int32_t y) {
  int32_t out;
  __asm__("smmulr %0, %1, %2" : "=r"(out) : "r"(x), "r"(y));
  return out;
}

#elif !defined(TESS_KERNELS_REFERENCE) && defined(TESS_KERNELS_EMULATE_DSP)
#define TESS_FAST 1

static inline uint32_t tess_lane_add(uint32_t acc, int32_t lo, int32_t hi) {
  const uint32_t low = (uint32_t)(uint16_t)((acc & 0xFFFFu) + (uint32_t)lo);
  const uint32_t high = (uint32_t)(uint16_t)((acc >> 16) + (uint32_t)hi);
  return low | (high << 16);
}
static inline uint32_t tess_sxtab16(uint32_t acc, uint32_t w) {
  return tess_lane_add(acc, (int8_t)(w & 0xFFu), (int8_t)((w >> 16) & 0xFFu));
}
static inline uint32_t tess_sxtab16_ror8(uint32_t acc, uint32_t w) {
  return tess_lane_add(acc, (int8_t)((w >> 8) & 0xFFu), (int8_t)(w >> 24));
}
static inline uint32_t tess_sxtb16(uint32_t w) { return tess_sxtab16(0u, w); }
static inline uint32_t tess_sxtb16_ror8(uint32_t w) { return tess_sxtab16_ror8(0u, w); }
static inline int32_t tess_smlabb(uint32_t x, int32_t y, int32_t acc) {
  return acc + (int16_t)(x & 0xFFFFu) * (int16_t)((uint32_t)y & 0xFFFFu);
}
static inline int32_t tess_smlatb(uint32_t x, int32_t y, int32_t acc) {
  return acc + (int16_t)(x >> 16) * (int16_t)((uint32_t)y & 0xFFFFu);
}
static inline int32_t tess_ssat16(int32_t v) { return v > INT16_MAX ? INT16_MAX : (v < INT16_MIN ? INT16_MIN : v); }
static inline int32_t tess_smlad(uint32_t x, uint32_t y, int32_t acc) {
  return acc + (int16_t)(x & 0xFFFFu) * (int16_t)(y & 0xFFFFu) + (int16_t)(x >> 16) * (int16_t)(y >> 16);
}
static inline int32_t tess_smmulr(int32_t x, int32_t y) { return (int32_t)(((int64_t)x * y + 0x80000000LL) >> 32); }
#endif

#if defined(TESS_MVE)
#include <arm_mve.h>

#include "tess_runtime.h"

/* Each int32 lane saturated to int16 (a saturating shift up by 16, then back). */
static inline int32x4_t tess_mve_ssat16(int32x4_t v) { return vshrq_n_s32(vqshlq_n_s32(v, 16), 16); }
/* tess_psi_q15 per lane: round(scale max(2^U_FRAC - |u - v_th|, 0) / 2^U_FRAC), for scales that
 * keep 2^U_FRAC scale inside int32 (VRSHR rounds without overflow). */
static inline int32x4_t tess_mve_psi(int32x4_t u, int32x4_t threshold, int32_t scale) {
  const int32x4_t rest = vmaxq_s32(vsubq_s32(vdupq_n_s32(1 << TESS_U_FRAC), vabdq_s32(u, threshold)), vdupq_n_s32(0));
  return vrshrq_n_s32(vmulq_n_s32(rest, scale), TESS_U_FRAC);
}
#endif

/* The fast path this build uses. */
static inline const char *tess_kernels_path(void) {
#if defined(TESS_FAST) && defined(TESS_KERNELS_EMULATE_DSP)
  return "dsp-emulated";
#elif defined(TESS_MVE)
  return "mve";
#elif defined(TESS_FAST)
  return "dsp";
#else
  return "reference";
#endif
}

/* Four weights of a row as one word (rows need not be word aligned). */
static inline uint32_t tess_load32(const int8_t *p) {
  uint32_t word;
  memcpy(&word, p, 4);
  return word;
}

/* acc[i] += w[i] and acc[i] += value * w[i], i < count: the reference rows. */
static inline void tess_add_row(int32_t *acc, const int8_t *w, int32_t count) {
  for (int32_t i = 0; i < count; ++i) acc[i] += w[i];
}
static inline void tess_mac_row(int32_t *acc, const int8_t *w, int32_t value, int32_t count) {
  for (int32_t i = 0; i < count; ++i) acc[i] += value * w[i];
}

#endif /* TESS_SIMD_H */
