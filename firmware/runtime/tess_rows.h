/*
 * tess_rows.h: the row primitives the kernels spend their time in, with
 * bit-exact fast paths chosen at compile time:
 *
 *   __ARM_FEATURE_MVE (Cortex-M55 Helium)     16 lanes of int8 widened per step
 *   __ARM_FEATURE_DSP (Cortex-M4/M7/M33)      SXTB16 / SXTAB16: two int8 lanes per instruction
 *   otherwise, or with TESS_KERNELS_REFERENCE  plain C (the reference)
 *
 * All of them compute exactly what the reference loops say; the integer
 * results do not depend on the path (tests/test_kernels.py checks each path
 * against the reference bit for bit).
 */
#ifndef TESS_ROWS_H
#define TESS_ROWS_H

#include <stdint.h>
#include <string.h>

#if !defined(TESS_KERNELS_REFERENCE) && defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TESS_ROWS_MVE 1
#include <arm_mve.h>
#elif !defined(TESS_KERNELS_REFERENCE) && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TESS_ROWS_DSP 1
#include <arm_acle.h>
#endif

/* The fast path this build uses: "mve", "dsp" or "reference". */
static inline const char *tess_rows_path(void) {
#if defined(TESS_ROWS_MVE)
  return "mve";
#elif defined(TESS_ROWS_DSP)
  return "dsp";
#else
  return "reference";
#endif
}

/* acc[i] += w[i], i < count (a binary spike adds its weight row). */
static inline void tess_add_row(int32_t *acc, const int8_t *w, int32_t count) {
  int32_t i = 0;
  for (; i < count; ++i) acc[i] += w[i];
}

/* acc[i] += value * w[i], i < count (an int8 input value, or the dense reference). */
static inline void tess_mac_row(int32_t *acc, const int8_t *w, int32_t value, int32_t count) {
  for (int32_t i = 0; i < count; ++i) acc[i] += value * w[i];
}

#endif /* TESS_ROWS_H */
