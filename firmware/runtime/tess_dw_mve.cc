// tess_dw_mve.cc: the conv layers' dW correlation (tess_dw.cc) on Helium (MVE,
// Cortex-M55), bit-exact with the reference; tess_dw_fast.cc offers each call
// to it first in an MVE build and keeps what it declines.
//  - For a row (kh, kw, ci) and a channel c the sum over output positions of
//    e_pre q + e_post x 2^frac is a dot product of int16 pairs: VMLADAVA takes
//    four neighbouring positions of one output row a time (eight products into
//    an int32 sum). The sums start at 2^(shift - 1), so the shift rounds.
//  - The sums are int32: taken only where this step's largest |e_pre|, |e_post|,
//    |q| and |x| bound every row's sum inside int32 (VMAXAV, once per call; a
//    layer sized by the export's e limit meets it).
//  - The input side of one ci is packed once as (q, x 2^frac) words on a map
//    padded with zeros (in acc, free during the learning step), so for stride 1
//    the inputs of four neighbouring positions are four consecutive words; the
//    e side is gathered (VLDRW gather: positions co words apart), and positions
//    past the map's width are predicated off.
//  - Four channels' sums are finished together: sat16(sum >> shift), added to
//    the int16 accumulators with saturation.
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>

namespace {

inline int32x4_t sat16(int32x4_t v) { return vshrq_n_s32(vqshlq_n_s32(v, 16), 16); }

// Whether every row's sum of this step stays inside int32 with its rounding: at most oh * ow
// positions, each adding |e_pre| |q| + |e_post| |x| 2^frac at most (this step's largest).
bool fits32(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, const uint32_t *e) {
  uint16_t pre = 0, post = 0, q = 0;
  uint8_t input = 0;
  const int16_t *halves = reinterpret_cast<const int16_t *>(e);  // e_pre, e_post, e_pre, ...
  for (int32_t i = 0; i < 2 * layer->n; i += 8) {
    const mve_pred16_t p = vctp16q((uint32_t)(2 * layer->n - i));
    const int16x8_t v = vldrhq_z_s16(halves + i, p);
    pre = vmaxavq_p_s16(pre, v, (mve_pred16_t)(p & 0x3333u));
    post = vmaxavq_p_s16(post, v, (mve_pred16_t)(p & 0xCCCCu));
  }
  for (int32_t i = 0; i < layer->nin; i += 8) {
    const mve_pred16_t p = vctp16q((uint32_t)(layer->nin - i));
    q = vmaxavq_p_s16(q, vldrhq_z_s16(state->q + i, p), p);
  }
  for (int32_t i = 0; i < layer->nin; i += 16) {
    const mve_pred16_t p = vctp8q((uint32_t)(layer->nin - i));
    input = vmaxavq_p_s8(input, vldrbq_z_s8(x + i, p), p);
  }
  const tess_learning_t *l = layer->learning;
  const int64_t positions = (int64_t)layer->conv.oh * layer->conv.ow, round = (int64_t)1 << (l->grad_shift - 1);
  return positions * ((int64_t)pre * q + (int64_t)post * ((int64_t)input << l->trace_frac)) + round <= INT32_MAX;
}

// Input channel ci as (q, x 2^frac) words on the padded map [oh + k - 1][width]: word
// (y, x) is the input at (y - pad_top, x - pad_left), zero outside the map.
void pack_input(const tess_conv_shape_t &s, const int16_t *q, const int8_t *x, int32_t frac, int32_t ci,
                int32_t width, uint32_t *packed) {
  const int32_t rows = s.oh + s.k - 1;
  for (int32_t i = 0; i < rows * width; i += 4) {
    vstrwq_p_u32(packed + i, vdupq_n_u32(0), vctp32q((uint32_t)(rows * width - i)));
  }
  const int32_t x0 = s.pad_left, x1 = s.w + s.pad_left < width ? s.w + s.pad_left : width;
  const uint32x4_t apart = vmulq_n_u32(vidupq_n_u32(0u, 1), (uint32_t)s.ci);  // neighbouring pixels
  for (int32_t y = s.pad_top; y < rows && y < s.h + s.pad_top; ++y) {
    const int32_t first = ((y - s.pad_top) * s.w) * s.ci + ci;
    for (int32_t col = x0; col < x1; col += 4) {
      const mve_pred16_t p = vctp32q((uint32_t)(x1 - col));
      const int32_t at = first + (col - x0) * s.ci;
      const int32x4_t qv = vldrhq_gather_shifted_offset_z_s32(q + at, apart, p);
      const int32x4_t xv = vshlq_r_s32(vldrbq_gather_offset_z_s32(x + at, apart, p), frac);
      vstrwq_p_u32(packed + y * width + col,
                   vsliq_n_u32(vreinterpretq_u32_s32(qv), vreinterpretq_u32_s32(xv), 16), p);
    }
  }
}

// One output row's group of four positions for a tap: its packed inputs (shifted by kw; past
// the map's width predicated off, p) and the byte addresses of its positions' e words of
// channel 0 (past the width: the row's first, in bounds and multiplied by zero inputs).
struct Item {
  uint32x4_t e;
  const uint32_t *in;
  mve_pred16_t p;
};

// The packed inputs of an item (kWhole: all four positions inside the map).
template <bool kWhole>
inline int16x8_t inputs(const Item *item) {
  return vreinterpretq_s16_u32(kWhole ? vldrwq_u32(item->in) : vldrwq_z_u32(item->in, item->p));
}

// g[c] = sat16(g[c] + sat16(sum_c >> shift)) for a block of channels' rounded sums.
inline void finish(int16_t *g, int32x4_t sums, int32_t shift) {
  vstrhq_s32(g, sat16(vaddq_s32(vldrhq_s32(g), sat16(vshlq_r_s32(sums, -shift)))));
}

inline int32x4_t lanes(int32_t a0, int32_t a1, int32_t a2, int32_t a3) {
  int32x4_t v = vdupq_n_s32(a0);
  v = vsetq_lane_s32(a1, v, 1);
  v = vsetq_lane_s32(a2, v, 2);
  return vsetq_lane_s32(a3, v, 3);
}

// One tap (kh, kw) of one ci: every channel's sum over the items from the rounding constant,
// eight channels at a time (then four), each VMLADAVA on gathered e and the packed inputs.
template <bool kWhole>
__attribute__((noinline)) void correlate_tap(const Item *items, const Item *end, int32_t co, int32_t round,
                                             int32_t shift, int16_t *g) {
  int32_t c0 = 0;
  for (; c0 + 8 <= co; c0 += 8) {
    int32_t a0 = round, a1 = round, a2 = round, a3 = round, a4 = round, a5 = round, a6 = round, a7 = round;
    for (const Item *item = items; item != end; ++item) {
      const uint32x4_t at = vaddq_n_u32(item->e, 4u * (uint32_t)c0);
      const int16x8_t in = inputs<kWhole>(item);
      a0 = vmladavaq_s16(a0, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 0)), in);
      a1 = vmladavaq_s16(a1, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 4)), in);
      a2 = vmladavaq_s16(a2, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 8)), in);
      a3 = vmladavaq_s16(a3, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 12)), in);
      a4 = vmladavaq_s16(a4, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 16)), in);
      a5 = vmladavaq_s16(a5, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 20)), in);
      a6 = vmladavaq_s16(a6, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 24)), in);
      a7 = vmladavaq_s16(a7, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 28)), in);
    }
    finish(g + c0, lanes(a0, a1, a2, a3), shift);
    finish(g + c0 + 4, lanes(a4, a5, a6, a7), shift);
  }
  if (c0 < co) {  // co % 8 == 4
    int32_t a0 = round, a1 = round, a2 = round, a3 = round;
    for (const Item *item = items; item != end; ++item) {
      const uint32x4_t at = vaddq_n_u32(item->e, 4u * (uint32_t)c0);
      const int16x8_t in = inputs<kWhole>(item);
      a0 = vmladavaq_s16(a0, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 0)), in);
      a1 = vmladavaq_s16(a1, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 4)), in);
      a2 = vmladavaq_s16(a2, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 8)), in);
      a3 = vmladavaq_s16(a3, vreinterpretq_s16_u32(vldrwq_gather_base_u32(at, 12)), in);
    }
    finish(g + c0, lanes(a0, a1, a2, a3), shift);
  }
}

// The packed map's words (a multiple of 4, so the items after it are vector aligned) and the
// most items a tap has (oh rows of groups of four positions).
inline int32_t map_words(const tess_conv_shape_t &s) {
  return ((s.oh + s.k - 1) * (4 * ((s.ow + 3) / 4) + s.k - 1) + 3) / 4 * 4;
}
inline int32_t max_items(const tess_conv_shape_t &s) { return s.oh * ((s.ow + 3) / 4); }

void conv_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
             const tess_scratch_t *scratch) {
  const tess_conv_shape_t &s = layer->conv;
  const tess_learning_t *l = layer->learning;
  const int32_t shift = l->grad_shift, round = 1 << (shift - 1);
  const int32_t groups = (s.ow + 3) / 4, width = 4 * groups + s.k - 1;
  uint32_t *packed = reinterpret_cast<uint32_t *>(scratch->acc);
  Item *items = reinterpret_cast<Item *>(packed + map_words(s));
  // byte offsets of the e words of four neighbouring positions
  const uint32x4_t apart = vmulq_n_u32(vidupq_n_u32(0u, 1), 4u * (uint32_t)s.co);
  for (int32_t ci = 0; ci < s.ci; ++ci) {
    pack_input(s, state->q, x, l->trace_frac, ci, width, packed);
    for (int32_t kh = 0; kh < s.k; ++kh) {
      // The output rows whose input row kh lies inside the map; none: round(0) = 0 leaves the rows.
      const int32_t y0 = s.pad_top - kh > 0 ? s.pad_top - kh : 0;
      const int32_t y1 = s.h + s.pad_top - kh < s.oh ? s.h + s.pad_top - kh : s.oh;
      Item *end = items;
      for (int32_t oy = y0; oy < y1; ++oy) {
        for (int32_t group = 0; group < groups; ++group, ++end) {
          const mve_pred16_t p = vctp32q((uint32_t)(s.ow - 4 * group));
          const uint32_t *e = scratch->e + (oy * s.ow + 4 * group) * s.co;
          const uint32_t first = (uint32_t)reinterpret_cast<uintptr_t>(scratch->e + oy * s.ow * s.co);
          end->e = vpselq_u32(vaddq_n_u32(apart, (uint32_t)reinterpret_cast<uintptr_t>(e)), vdupq_n_u32(first), p);
          end->in = packed + (oy + kh) * width + 4 * group;
          end->p = p;
        }
      }
      if (end == items) continue;
      for (int32_t kw = 0; kw < s.k; ++kw) {
        int16_t *g = state->g + ((kh * s.k + kw) * s.ci + ci) * s.co;
        if (s.ow % 4 == 0) {
          correlate_tap<true>(items, end, s.co, round, shift, g);
        } else {
          correlate_tap<false>(items, end, s.co, round, shift, g);
        }
        for (Item *item = items; item != end; ++item) ++item->in;  // the next tap reads one word to the right
      }
    }
  }
}

}  // namespace

extern "C" {

int32_t tess_mve_accumulate_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                               const tess_scratch_t *scratch) {
  const tess_conv_shape_t &s = layer->conv;
  const int32_t frac = layer->learning->trace_frac, shift = layer->learning->grad_shift;
  // x 2^frac must be an int16 half (int8 inputs: frac <= 8, spikes: frac <= 14); the padded map
  // of one ci and a tap's items must fit acc (n words).
  if (layer->kind != TESS_LAYER_CONV || s.stride != 1 || s.co % 4 != 0 || frac > (layer->analog ? 8 : 14) ||
      shift < 1 || shift > 31 || scratch->acc == nullptr ||
      (int64_t)map_words(s) + (int64_t)max_items(s) * (int64_t)(sizeof(Item) / 4) > layer->n ||
      !fits32(layer, state, x, scratch->e)) {
    return 0;
  }
  conv_dw(layer, state, x, scratch);
  return 1;
}

}  // extern "C"

#endif
