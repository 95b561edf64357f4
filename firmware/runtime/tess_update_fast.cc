// tess_update_fast.cc: the once-per-sample SGD step (tess_update.cc), bit-exact
// with the reference, two weights per generator draw:
//  - weights 2k and 2k + 1 share draw counter + k (low and high half); with an
//    even channel count they are channels c and c + 1 of one row, so the loop
//    runs over channel pairs with their multipliers and shifts loaded once
//    (one channel: consecutive weights of that channel);
//  - a pair whose two accumulators are zero (or whose rescaled steps are 0)
//    leaves its weights as they are: (0 + r) >> 16 = 0 for any 16-bit r, so
//    its draw is skipped (the generator is counter-based: draw k is the same
//    whether or not draw k - 1 was taken);
//  - rescale for shift >= 33 uses the product's high word only (tess_fast.h);
//    an int16 accumulator times a multiplier below 2^15 (the export's for the
//    spiking layers, shift <= 31) plus the rounding fits int32: one MLA;
//  - on the DSP cores such pairs (one shift for both, rows of 1..32 channels,
//    and the readout's int32 accumulators while inside int16) run in assembly;
//  - a Helium build (TESS_MVE) first offers the call to tess_update_mve.cc, eight
//    weights a step, and keeps here the layers it declines.
#include "tess_fast.h"

#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_FAST)

namespace {

inline int8_t clamp_weight(int32_t value) {
  return (int8_t)(value > TESS_WEIGHT_MAX ? TESS_WEIGHT_MAX : (value < -TESS_WEIGHT_MAX ? -TESS_WEIGHT_MAX : value));
}

// The new weight for a non-zero step delta: clamp(w + floor((r - delta) / 2^16), +-127), r a 16-bit draw.
inline int8_t step_weight(int8_t w, int32_t delta, uint32_t random) {
  const int32_t step = delta > -0x7FFF0000 && delta < 0x7FFF0000 ? ((int32_t)random - delta) >> 16
                                                                    : (int32_t)tess_sgd_step(delta, random);
  return clamp_weight(w + step);
}

// How a channel's rescale is computed: any (tess_rescale_fast), shift >= 33 (the product's high
// word), or an int16 accumulator with |mult| < 2^15 and 1 <= shift <= 31 (in int32). The
// last two give |delta| < 2^30, so (r - delta) >> 16 stays in int32.
enum { kAny = 0, kHigh = 1, kSmall = 2 };

// An int32 accumulator (the readout's) takes the kSmall arithmetic while it is inside int16.
template <typename G>
inline int32_t class_of(int32_t m, int32_t s) {
  if (s >= 33) return kHigh;
  if (m > -32768 && m < 32768 && s >= 1 && s <= 31) return kSmall;
  return kAny;
}

template <int kClass>
inline int32_t delta_of(int32_t g, int32_t m, int32_t s) {
  if (kClass == kHigh) return ((int32_t)(((int64_t)g * m) >> 32) + (1 << (s - 33))) >> (s - 32);
  if (kClass == kSmall) {
    if ((uint32_t)g + 32768u < 65536u) return (g * m + (1 << (s - 1))) >> s;
    return tess_rescale_fast(g, m, s);  // an int32 accumulator past int16: |delta| may reach 2^31
  }
  return tess_rescale_fast(g, m, s);
}

// Weights i and i + 1 (channels a and b: m[], s[]) with draw position `position`.
template <int kClass, typename G>
inline void update_pair(int8_t *w, G *g, const int32_t m[2], const int32_t s[2], uint32_t position) {
  const int32_t g0 = g[0], g1 = g[1];
  if ((g0 | g1) == 0) return;
  g[0] = 0;
  g[1] = 0;
  const int32_t d0 = g0 != 0 ? delta_of<kClass>(g0, m[0], s[0]) : 0;
  const int32_t d1 = g1 != 0 ? delta_of<kClass>(g1, m[1], s[1]) : 0;
  if ((d0 | d1) == 0) return;
  const uint32_t random = tess_mix32(position);
  if (kClass == kHigh || (kClass == kSmall && sizeof(G) == 2)) {  // |delta| < 2^30: (r - delta) >> 16 in int32
    if (d0 != 0) w[0] = clamp_weight(w[0] + (((int32_t)(random & 0xFFFFu) - d0) >> 16));
    if (d1 != 0) w[1] = clamp_weight(w[1] + (((int32_t)(random >> 16) - d1) >> 16));
  } else {
    if (d0 != 0) w[0] = step_weight(w[0], d0, random & 0xFFFFu);
    if (d1 != 0) w[1] = step_weight(w[1], d1, random >> 16);
  }
}

// Every pair (i, i + 1), i = first, first + stride, ... below count - 1, of the channels (a, b).
template <int kClass, typename G>
void pairs(int8_t *w, G *g, int32_t first, int32_t stride, int32_t count, const int32_t m[2], const int32_t s[2],
           uint32_t position, uint32_t advance) {
  for (int32_t i = first; i + 1 < count; i += stride, position += advance) {
    update_pair<kClass>(w + i, g + i, m, s, position);
  }
}

// The common case, both channels of the pair kSmall: no branch per weight (a zero accumulator
// rounds to delta 0, which (r - 0) >> 16 = 0 leaves as it is), loads hoisted. An int32
// accumulator outside int16 takes the general pair update.
template <typename G>
void pairs_small(int8_t *w, G *g, int32_t first, int32_t stride, int32_t count, const int32_t m[2],
                 const int32_t s[2], uint32_t position, uint32_t advance) {
  const int32_t m0 = m[0], m1 = m[1], s0 = s[0], s1 = s[1], r0 = 1 << (s0 - 1), r1 = 1 << (s1 - 1);
  for (int32_t i = first; i + 1 < count; i += stride, position += advance) {
    const int32_t g0 = g[i], g1 = g[i + 1];
    if ((g0 | g1) == 0) continue;
    if (sizeof(G) != 2 && ((uint32_t)g0 + 32768u >= 65536u || (uint32_t)g1 + 32768u >= 65536u)) {
      update_pair<kAny>(w + i, g + i, m, s, position);
      continue;
    }
    g[i] = 0;
    g[i + 1] = 0;
    const int32_t d0 = (g0 * m0 + r0) >> s0, d1 = (g1 * m1 + r1) >> s1;
    if ((d0 | d1) == 0) continue;
    const uint32_t random = tess_mix32(position);
    w[i] = clamp_weight(w[i] + (((int32_t)(random & 0xFFFFu) - d0) >> 16));
    w[i + 1] = clamp_weight(w[i + 1] + (((int32_t)(random >> 16) - d1) >> 16));
  }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(TESS_KERNELS_EMULATE_DSP)
#define TESS_UPDATE_ASM 1
// pairs_small for int16 accumulators, both channels with the same shift, a row of kStride
// channels: 31 instructions a pair in assembly (GCC spills the C loop's 13 live values).
// The two steps and weights travel as int16 halves of one register: the high step is the
// top half of r_hi - d1 as it is, the low one (r_lo - d0) >> 16 (PKHTB); one SADD16 adds
// both (|w| <= 127, |step| < 2^14), SSAT16 clamps to [-128, 127], SSUB16 against -127
// sets GE where a half is >= -127 and SEL keeps it, else -127. A pair with d0 = d1 = 0
// stores its weights unchanged ((r_lo - 0) >> 16 = 0, top half of r_hi = 0), so only a
// zero pair of accumulators skips. Registers pinned, r7 left to a frame pointer.
// The pair's body from its packed accumulators in r0 (the int16 and the int32 loops share it).
#define TESS_UPDATE_PAIR_BODY \
      "smlabb r1, r0, %[m], %[round]\n\t" \
      "asr r1, r1, %[s]\n\t" \
      "smlatt lr, r0, %[m], %[round]\n\t" \
      "asr lr, lr, %[s]\n\t" \
      "eor r0, %[pos], %[pos], lsr #16\n\t" \
      "mul r0, r0, %[k1]\n\t" \
      "eor r0, r0, r0, lsr #15\n\t" \
      "mul r0, r0, %[k2]\n\t" \
      "eor r0, r0, r0, lsr #16\n\t" \
      "rsb lr, lr, r0, lsr #16\n\t" \
      "uxth r0, r0\n\t" \
      "sub r1, r0, r1\n\t" \
      "pkhtb r1, lr, r1, asr #16\n\t" \
      "ldrsb r0, [%[wp]]\n\t" \
      "ldrsb lr, [%[wp], #1]\n\t" \
      "pkhbt r0, r0, lr, lsl #16\n\t" \
      "sadd16 r0, r0, r1\n\t" \
      "ssat16 r0, #8, r0\n\t" \
      "mvn lr, #0x007E007E\n\t" \
      "ssub16 r1, r0, lr\n\t" \
      "sel r0, r0, lr\n\t" \
      "lsrs r1, r0, #16\n\t" \
      "strb r1, [%[wp], #1]\n\t" \
      "strb r0, [%[wp]], %[wstep]\n\t" \
      "add %[pos], %[pos], %[adv]\n\t" \
      "cmp %[gp], %[gend]\n\t" \
      "bne 1b\n\t"

template <int32_t kStride>
__attribute__((noinline)) void pairs_small_asm(int8_t *w, int16_t *g, int16_t *end, uint32_t mm, int32_t shift,
                                               uint32_t position, uint32_t advance) {
  register int8_t *wp __asm__("r2") = w;
  register int16_t *gp __asm__("r3") = g;
  register int16_t *gend __asm__("r4") = end;
  register uint32_t pos __asm__("r5") = position;
  register uint32_t adv __asm__("r6") = advance;
  register uint32_t m __asm__("r8") = mm;
  register int32_t round __asm__("r9") = 1 << (shift - 1);
  register int32_t s __asm__("r10") = shift;
  register uint32_t k1 __asm__("r11") = 0x7FEB352Du;
  register uint32_t k2 __asm__("r12") = 0x846CA68Bu;
  __asm__ volatile(
      "1:\n\t"
      "ldr r0, [%[gp]], %[gstep]\n\t"
      "cbz r0, 2f\n\t"
      "movs r1, #0\n\t"
      "str r1, [%[gp], #-%c[gbytes]]\n\t"
      TESS_UPDATE_PAIR_BODY
      "b 3f\n\t"
      "2:\n\t"
      "add %[wp], %[wp], %[wstep]\n\t"
      "add %[pos], %[pos], %[adv]\n\t"
      "cmp %[gp], %[gend]\n\t"
      "bne 1b\n\t"
      "3:\n\t"
      : [wp] "+r"(wp), [gp] "+r"(gp), [pos] "+r"(pos)
      : [gend] "r"(gend), [adv] "r"(adv), [m] "r"(m), [round] "r"(round), [s] "r"(s), [k1] "r"(k1), [k2] "r"(k2),
        [gstep] "i"(2 * kStride), [gbytes] "i"(2 * kStride), [wstep] "i"(kStride)
      : "r0", "r1", "lr", "cc", "memory");
}

// Where pairs32_asm stands: the next pair's weights, accumulators and draw position.
struct Cursor {
  int8_t *w;
  int32_t *g;
  uint32_t position;
};

// The same loop for int32 accumulators (the readout's: one channel, so weights i, i + 1 of
// one multiplier and shift): a pair with both inside int16 packs them (PKHBT) and runs the
// body; it stops at a pair outside int16 (c->g then points at it) or at end.
__attribute__((noinline)) void pairs32_asm(Cursor *c, int32_t *end, uint32_t mm, int32_t shift, uint32_t advance) {
  register int8_t *wp __asm__("r2") = c->w;
  register int32_t *gp __asm__("r3") = c->g;
  register int32_t *gend __asm__("r4") = end;
  register uint32_t pos __asm__("r5") = c->position;
  register uint32_t adv __asm__("r6") = advance;
  register uint32_t m __asm__("r8") = mm;
  register int32_t round __asm__("r9") = 1 << (shift - 1);
  register int32_t s __asm__("r10") = shift;
  register uint32_t k1 __asm__("r11") = 0x7FEB352Du;
  register uint32_t k2 __asm__("r12") = 0x846CA68Bu;
  __asm__ volatile(
      "1:\n\t"
      "ldrd r0, r1, [%[gp]], #8\n\t"
      "orrs lr, r0, r1\n\t"
      "beq 2f\n\t"
      "sxth lr, r0\n\t"
      "cmp lr, r0\n\t"
      "bne 4f\n\t"
      "sxth lr, r1\n\t"
      "cmp lr, r1\n\t"
      "bne 4f\n\t"
      "pkhbt r0, r0, r1, lsl #16\n\t"
      "mov lr, #0\n\t"
      "strd lr, lr, [%[gp], #-8]\n\t"
      TESS_UPDATE_PAIR_BODY
      "b 3f\n\t"
      "4:\n\t"
      "sub %[gp], %[gp], #8\n\t"
      "b 3f\n\t"
      "2:\n\t"
      "add %[wp], %[wp], %[wstep]\n\t"
      "add %[pos], %[pos], %[adv]\n\t"
      "cmp %[gp], %[gend]\n\t"
      "bne 1b\n\t"
      "3:\n\t"
      : [wp] "+r"(wp), [gp] "+r"(gp), [pos] "+r"(pos)
      : [gend] "r"(gend), [adv] "r"(adv), [m] "r"(m), [round] "r"(round), [s] "r"(s), [k1] "r"(k1), [k2] "r"(k2),
        [wstep] "i"(2)
      : "r0", "r1", "lr", "cc", "memory");
  c->w = wp;
  c->g = gp;
  c->position = pos;
}

// The assembly's pairs: pairs_small's (i = first, first + stride, ... with i + 1 < count).
template <int32_t kStride>
void run_pairs_asm(int8_t *w, int16_t *g, int32_t first, int32_t count, const int32_t m[2], int32_t shift,
                   uint32_t position, uint32_t advance) {
  if (first + 1 >= count) return;
  const int32_t pairs = (count - 2 - first) / kStride + 1;
  const uint32_t mm = ((uint32_t)m[0] & 0xFFFFu) | ((uint32_t)m[1] << 16);
  pairs_small_asm<kStride>(w + first, g + first, g + first + pairs * kStride, mm, shift, position, advance);
}

// True where the assembly took the pairs (int16 accumulators, one shift, a row of at most 32
// channels, a power of two).
template <typename G>
bool pairs_fast(int8_t *w, G *g, int32_t first, int32_t stride, int32_t count, const int32_t m[2], const int32_t s[2],
                uint32_t position, uint32_t advance) {
  if (s[0] != s[1]) return false;
  if (sizeof(G) == 4 && stride == 2) {  // the readout: one channel
    if (first + 1 >= count) return true;
    int32_t *end = reinterpret_cast<int32_t *>(g) + first + 2 * ((count - 2 - first) / 2 + 1);
    const uint32_t mm = ((uint32_t)m[0] & 0xFFFFu) | ((uint32_t)m[1] << 16);
    Cursor c = {w + first, reinterpret_cast<int32_t *>(g) + first, position};
    while (true) {
      pairs32_asm(&c, end, mm, s[0], advance);
      if (c.g == end) return true;
      update_pair<kAny>(c.w, c.g, m, s, c.position);  // a pair outside int16
      c.w += 2;
      c.g += 2;
      c.position += advance;
      if (c.g == end) return true;
    }
  }
  if (sizeof(G) != 2) return false;
  int16_t *g16 = reinterpret_cast<int16_t *>(g);
  switch (stride) {
    case 2: run_pairs_asm<2>(w, g16, first, count, m, s[0], position, advance); return true;
    case 4: run_pairs_asm<4>(w, g16, first, count, m, s[0], position, advance); return true;
    case 8: run_pairs_asm<8>(w, g16, first, count, m, s[0], position, advance); return true;
    case 16: run_pairs_asm<16>(w, g16, first, count, m, s[0], position, advance); return true;
    case 32: run_pairs_asm<32>(w, g16, first, count, m, s[0], position, advance); return true;
    default: return false;
  }
}
#endif

template <typename G>
void fast_update(int8_t *w, G *g, int32_t count, int32_t channels, const int32_t *mult, const int8_t *shift,
                 uint32_t seed, uint32_t counter) {
  if (channels % 2 != 0 && channels != 1) {  // pairs straddle the rows: weight by weight
    int32_t co = 0;
    for (int32_t i = 0; i < count; ++i) {
      const int32_t gi = g[i];
      g[i] = 0;
      const int32_t delta = gi != 0 ? tess_rescale_fast(gi, mult[co], shift[co]) : 0;
      if (delta != 0) {
        const uint32_t random = tess_mix32(seed + (counter + (uint32_t)(i / 2)) * TESS_RANDOM_STEP);
        w[i] = step_weight(w[i], delta, (i % 2 != 0 ? random >> 16 : random) & 0xFFFFu);
      }
      if (++co == channels) co = 0;
    }
    return;
  }
  if (count % 2 != 0) {  // odd count: the last weight (channel i % channels) alone, the low half of its draw
    const int32_t i = count - 1, gi = g[i], c = i % channels;
    g[i] = 0;
    const int32_t delta = gi != 0 ? tess_rescale_fast(gi, mult[c], shift[c]) : 0;
    if (delta != 0) {
      w[i] = step_weight(w[i], delta, tess_mix32(seed + (counter + (uint32_t)(i / 2)) * TESS_RANDOM_STEP) & 0xFFFFu);
    }
    --count;  // the pairs below: the weights are independent, so the order does not matter
  }
  // Channel pairs (c, c + 1) of each row, or one channel's consecutive weights.
  const int32_t stride = channels == 1 ? 2 : channels;
  const uint32_t advance = (uint32_t)(stride / 2) * TESS_RANDOM_STEP;
  for (int32_t c = 0; c < stride; c += 2) {
    const int32_t a = channels == 1 ? 0 : c, b = channels == 1 ? 0 : c + 1;
    const int32_t m[2] = {mult[a], mult[b]}, s[2] = {shift[a], shift[b]};
    const uint32_t position = seed + (counter + (uint32_t)(c / 2)) * TESS_RANDOM_STEP;
    const int32_t kind = class_of<G>(m[0], s[0]);
    if (kind == kHigh && class_of<G>(m[1], s[1]) == kHigh) {
      pairs<kHigh>(w, g, c, stride, count, m, s, position, advance);
    } else if (kind == kSmall && class_of<G>(m[1], s[1]) == kSmall) {
#if defined(TESS_UPDATE_ASM)
      if (pairs_fast(w, g, c, stride, count, m, s, position, advance)) continue;
#endif
      pairs_small(w, g, c, stride, count, m, s, position, advance);
    } else {
      pairs<kAny>(w, g, c, stride, count, m, s, position, advance);
    }
  }
}

}  // namespace

extern "C" {

int32_t tess_fast_update(int8_t *w, int16_t *g, int32_t count, int32_t channels, const int32_t *mult,
                         const int8_t *shift, uint32_t seed, uint32_t counter) {
#if defined(TESS_MVE)
  if (tess_mve_update(w, g, count, channels, mult, shift, seed, counter)) return 1;
#endif
  fast_update(w, g, count, channels, mult, shift, seed, counter);
  return 1;
}

int32_t tess_fast_update32(int8_t *w, int32_t *g, int32_t count, int32_t channels, const int32_t *mult,
                           const int8_t *shift, uint32_t seed, uint32_t counter) {
#if defined(TESS_MVE)
  if (tess_mve_update32(w, g, count, channels, mult, shift, seed, counter)) return 1;
#endif
  fast_update(w, g, count, channels, mult, shift, seed, counter);
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_fast_update(int8_t *, int16_t *, int32_t, int32_t, const int32_t *, const int8_t *, uint32_t, uint32_t) {
  return 0;
}

int32_t tess_fast_update32(int8_t *, int32_t *, int32_t, int32_t, const int32_t *, const int8_t *, uint32_t,
                           uint32_t) {
  return 0;
}

}  // extern "C"

#endif
