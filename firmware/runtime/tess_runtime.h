/*
 * tess_runtime.h: the fixed integer runtime of the generated TESS engine.
 *
 * Saturating fixed-point helpers, the surrogate derivative, an integer
 * softmax for the learning signals, stochastic rounding and the seeded
 * counter-based random generator. Header-only, C99 and C++17, no heap, no
 * floating point, no exceptions. Every function has a bit-exact twin in
 * tess_keras/export/golden.py; change both or neither.
 *
 * Number formats: membrane Q4.11 in int16; surrogate, post trace,
 * probabilities and errors Q15; softmax inputs Q19.12; a real multiplier is
 * mult * 2^-shift with int32 mult and 1 <= shift <= 62. Right shifts of
 * negative values are arithmetic (floor), as GCC and Clang define them.
 */
#ifndef TESS_RUNTIME_H
#define TESS_RUNTIME_H

#include <stdint.h>

#define TESS_U_FRAC 11
#define TESS_Q15_ONE 32768
#define TESS_LOGIT_FRAC 12
#define TESS_UPDATE_FRAC 16
#define TESS_WEIGHT_MAX 127
#define TESS_LOG2E_Q12 5909

static inline int32_t tess_sat32(int64_t v) {
  return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v);
}

static inline int16_t tess_sat16(int64_t v) {
  return v > INT16_MAX ? INT16_MAX : (v < INT16_MIN ? INT16_MIN : (int16_t)v);
}

static inline int32_t tess_clamp32(int64_t v, int32_t low, int32_t high) {
  return v > high ? high : (v < low ? low : (int32_t)v);
}

/* round(x / 2^shift), ties up; shift >= 1. */
static inline int64_t tess_round_shift(int64_t x, int32_t shift) {
  return (x + ((int64_t)1 << (shift - 1))) >> shift;
}

/* round(x * mult / 2^shift) saturated to int32 (TFLite-Micro style requantisation). */
static inline int32_t tess_rescale(int32_t x, int32_t mult, int32_t shift) {
  return tess_sat32(tess_round_shift((int64_t)x * mult, shift));
}

/* Surrogate psi(u) = scale * max(1 - |u - v_th|, 0): Q11 membrane in, Q15 out. */
static inline int32_t tess_psi_q15(int32_t u, int32_t threshold, int32_t scale_q15) {
  int32_t distance = u - threshold;
  if (distance < 0) distance = -distance;
  const int32_t rest = (1 << TESS_U_FRAC) - distance;
  if (rest <= 0) return 0;
  return (int32_t)tess_round_shift((int64_t)rest * scale_q15, TESS_U_FRAC);
}

/* 2^(-i/256) in Q15. */
static const uint16_t tess_exp2_lut[256] = {
    32768, 32679, 32591, 32503, 32415, 32327, 32240, 32153, 32066, 31979, 31893, 31806, 31720, 31635, 31549, 31464,
    31379, 31294, 31209, 31125, 31041, 30957, 30873, 30790, 30706, 30623, 30541, 30458, 30376, 30293, 30212, 30130,
    30048, 29967, 29886, 29805, 29725, 29644, 29564, 29484, 29405, 29325, 29246, 29167, 29088, 29009, 28931, 28852,
    28774, 28697, 28619, 28542, 28464, 28388, 28311, 28234, 28158, 28082, 28006, 27930, 27855, 27779, 27704, 27629,
    27554, 27480, 27406, 27332, 27258, 27184, 27110, 27037, 26964, 26891, 26818, 26746, 26674, 26601, 26530, 26458,
    26386, 26315, 26244, 26173, 26102, 26031, 25961, 25891, 25821, 25751, 25681, 25612, 25543, 25474, 25405, 25336,
    25268, 25199, 25131, 25063, 24995, 24928, 24860, 24793, 24726, 24659, 24593, 24526, 24460, 24394, 24328, 24262,
    24196, 24131, 24066, 24001, 23936, 23871, 23806, 23742, 23678, 23614, 23550, 23486, 23423, 23359, 23296, 23233,
    23170, 23108, 23045, 22983, 22921, 22859, 22797, 22735, 22674, 22613, 22552, 22491, 22430, 22369, 22309, 22248,
    22188, 22128, 22068, 22009, 21949, 21890, 21831, 21772, 21713, 21654, 21595, 21537, 21479, 21421, 21363, 21305,
    21247, 21190, 21133, 21076, 21019, 20962, 20905, 20849, 20792, 20736, 20680, 20624, 20568, 20513, 20457, 20402,
    20347, 20292, 20237, 20182, 20127, 20073, 20019, 19965, 19911, 19857, 19803, 19750, 19696, 19643, 19590, 19537,
    19484, 19431, 19379, 19326, 19274, 19222, 19170, 19118, 19066, 19015, 18963, 18912, 18861, 18810, 18759, 18708,
    18658, 18607, 18557, 18507, 18457, 18407, 18357, 18308, 18258, 18209, 18160, 18110, 18061, 18013, 17964, 17915,
    17867, 17819, 17770, 17722, 17674, 17627, 17579, 17531, 17484, 17437, 17390, 17343, 17296, 17249, 17202, 17156,
    17109, 17063, 17017, 16971, 16925, 16879, 16834, 16788, 16743, 16697, 16652, 16607, 16562, 16518, 16473, 16428,
};

/*
 * err[c] = softmax(z)[c] - (c == label), Q15, from Q12 logits z[0..n).
 * exp is 2^(-d log2 e) from a 256-entry table; a label outside [0, n)
 * subtracts nothing. Needs n <= 65536.
 */
static inline void tess_softmax_error(const int32_t *z, int32_t n, int32_t label, int32_t *err) {
  int32_t zmax = z[0];
  for (int32_t c = 1; c < n; ++c) zmax = z[c] > zmax ? z[c] : zmax;
  int64_t total = 0;
  for (int32_t c = 0; c < n; ++c) {
    const int64_t d = (int64_t)zmax - z[c];
    const int64_t t = (d * TESS_LOG2E_Q12 + (1 << 11)) >> 12;
    const int64_t whole = t >> 12;
    err[c] = whole >= 16 ? 0 : (int32_t)(tess_exp2_lut[(t & 4095) >> 4] >> whole);
    total += err[c];
  }
  // err[c] <= 2^15 and total <= n 2^15: the rounded quotient's operands fit uint32 (one UDIV, not
  // a 64-bit division routine) for any n below 2^16.
  const bool narrow = n < 65536;
  for (int32_t c = 0; c < n; ++c) {
    const int64_t p = narrow ? (int64_t)(((uint32_t)err[c] * TESS_Q15_ONE + (uint32_t)(total / 2)) / (uint32_t)total)
                             : ((int64_t)err[c] * TESS_Q15_ONE + total / 2) / total;
    err[c] = (int32_t)p - (c == label ? TESS_Q15_ONE : 0);
  }
}

/* Counter-based generator: lowbias32(seed + k * 0x9E3779B9) for k = 0, 1, 2... */
#define TESS_RANDOM_STEP 0x9E3779B9u
/* The lowbias32 mix of a generator position x = seed + k * TESS_RANDOM_STEP. */
static inline uint32_t tess_mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

static inline uint32_t tess_random(uint32_t seed, uint32_t counter) { return tess_mix32(seed + counter * TESS_RANDOM_STEP); }

/*
 * Stochastic rounding of an SGD step: value - delta with delta in Q16 of one
 * LSB. Adding a uniform 16-bit draw before the floor makes the expected step
 * equal the exact update, so updates below one LSB still count on average.
 */
static inline int64_t tess_sgd_step(int32_t delta_q16, uint32_t random) {
  return (-(int64_t)delta_q16 + (int64_t)(random & 0xFFFFu)) >> TESS_UPDATE_FRAC;
}

/* FNV-1a, 32 bit. */
#define TESS_FNV_OFFSET 0x811C9DC5u
static inline uint32_t tess_fnv1a_byte(uint32_t state, uint8_t byte) {
  return (state ^ byte) * 0x01000193u;
}

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320, as zlib.crc32): pass 0 to start, the result to continue. */
static inline uint32_t tess_crc32(uint32_t crc, const uint8_t *data, uint32_t count) {
  crc = ~crc;
  for (uint32_t i = 0; i < count; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

#endif /* TESS_RUNTIME_H */
