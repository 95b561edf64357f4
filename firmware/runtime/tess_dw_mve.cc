// tess_dw_mve.cc: the conv layers' dW correlation (tess_dw.cc) on Helium (MVE,
// Cortex-M55), bit-exact with the reference; tess_dw_fast.cc offers each call
// to it first in an MVE build and keeps what it declines.
//  - For a row (kh, kw, ci) and a channel c the sum over output positions p of
//    e_pre q + e_post x 2^frac is a dot product of int16 pairs: VMLADAVA takes
//    four consecutive positions a time (eight products into an int32 sum).
//  - The sums are int32: taken only where this step's largest |e_pre|, |e_post|,
//    |q| and |x| bound every row's sum inside int32 (VMAXAV, once per call; a
//    layer sized by the export's e limit meets it).
//  - Both sides are made contiguous along p: e is transposed once per call into
//    acc (free during the learning step), four channels' groups of four positions
//    side by side (VST4); for each ci the inputs are packed as (q, x 2^frac) words
//    in e's buffer (read by then) as k maps [oh + k - 1][ow], map kw shifted by kw,
//    zero outside the input, so tap (kh, kw) reads map kw from row kh on: a
//    stride-1 conv's receptive fields are its rows; the groups of rows with no
//    input in reach are skipped. An assembly loop (row_sums) keeps four
//    channels' sums in the registers VMLADAVA takes.
//  - A row's sums are finished eight channels a step: sat16(round(sum / 2^shift))
//    added to the int16 accumulators with saturation.
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>

namespace {

// Whether every row's sum of this step stays inside int32 with its rounding: at most oh * ow
// positions, each adding |e_pre| |q| + |e_post| |x| 2^frac at most (this step's largest; the
// exact bound of tess_dw_fast.cc's fits32, found with VMAXAV).
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

// e [p][c] as groups of four positions of four channels: word ((b PG + pg) 4 + j) 4 + i is
// channel 4 b + j at position 4 pg + i (PG = positions / 4).
void transpose_e(const uint32_t *e, int32_t positions, int32_t co, uint32_t *out) {
  for (int32_t b = 0; b < co / 4; ++b) {
    for (int32_t p = 0; p < positions; p += 4, out += 16) {
      const uint32_t *at = e + p * co + 4 * b;
      const uint32x4x4_t block = {
          {vldrwq_u32(at), vldrwq_u32(at + co), vldrwq_u32(at + 2 * co), vldrwq_u32(at + 3 * co)}};
      vst4q_u32(out, block);
    }
  }
}

// The packed maps, one per tap column kw: [oh + k - 1][ow] words, word (y, x) of map kw the
// input at (y - pad_top, x + kw - pad_left) as (q, x 2^frac), zero outside the input. The zeros
// are the same for every ci: written once per call (clear_maps), then pack_input overwrites the
// words inside the input for each ci.
inline int32_t map_words(const tess_conv_shape_t &s) { return (s.oh + s.k - 1) * s.ow; }

void clear_maps(const tess_conv_shape_t &s, uint32_t *maps) {
  const int32_t words = s.k * map_words(s);
  for (int32_t i = 0; i < words; i += 4) vstrwq_p_u32(maps + i, vdupq_n_u32(0), vctp32q((uint32_t)(words - i)));
}

void pack_input(const tess_conv_shape_t &s, const int16_t *__restrict q, const int8_t *__restrict x, int32_t frac,
                int32_t ci, uint32_t *__restrict maps) {
  // the shape in locals: the stores through maps could otherwise alias it
  const int32_t h = s.h, w = s.w, channels = s.ci, ow = s.ow, k = s.k, pad_top = s.pad_top, pad_left = s.pad_left;
  const int32_t rows = s.oh + k - 1, words = rows * ow;
  for (int32_t iy = 0; iy < h && iy + pad_top < rows; ++iy) {
    uint32_t *row = maps + (iy + pad_top) * ow;
    const int16_t *qs = q + iy * w * channels + ci;
    const int8_t *xs = x + iy * w * channels + ci;
    for (int32_t ix = 0; ix < w; ++ix, qs += channels, xs += channels) {
      const uint32_t value = (uint32_t)(uint16_t)*qs | ((uint32_t)(*xs * (1 << frac)) << 16);
      // word column ix + pad_left - kw of map kw, for the maps kw = first .. last that hold it
      const int32_t column = ix + pad_left;
      const int32_t first = column - ow + 1 > 0 ? column - ow + 1 : 0, last = column < k - 1 ? column : k - 1;
      uint32_t *out = row + first * words + column - first;
      for (int32_t kw = first; kw <= last; ++kw, out += words - 1) *out = value;
    }
  }
}

// The unrounded sums of one row (kh, kw, ci) for every channel, sums[c]: block by block of four
// channels (the transposed e's columns, 16 words a group, `stride` bytes a block), the position
// groups [g0, g1) (count = g1 - g0 >= 1) against the packed inputs from `in`. In assembly: GCC
// keeps the four sums out of the even registers VMLADAVA needs and copies them every group.
// 10 instructions a group: one load of inputs, four of e (post-indexed), four VMLADAVA, LE.
inline void row_sums(const uint32_t *et, const uint32_t *in, int32_t count, int32_t blocks, uint32_t stride,
                     int32_t *sums) {
  register int32_t a0 __asm__("r4");
  register int32_t a1 __asm__("r6");
  register int32_t a2 __asm__("r8");
  register int32_t a3 __asm__("r10");
  const uint32_t *e, *v;
  __asm__ volatile(
      "1:\n\t"
      "mov %[e], %[et]\n\t"
      "mov %[v], %[in]\n\t"
      // the first group starts the sums (VMLADAV), the others add to them
      "vldrw.u32 q0, [%[v]], #16\n\t"
      "vldrw.u32 q1, [%[e]], #64\n\t"
      "vldrw.u32 q2, [%[e], #-48]\n\t"
      "vldrw.u32 q3, [%[e], #-32]\n\t"
      "vldrw.u32 q4, [%[e], #-16]\n\t"
      "vmladav.s16 %[a0], q1, q0\n\t"
      "vmladav.s16 %[a1], q2, q0\n\t"
      "vmladav.s16 %[a2], q3, q0\n\t"
      "vmladav.s16 %[a3], q4, q0\n\t"
      "wls lr, %[rest], 3f\n\t"
      "2:\n\t"
      "vldrw.u32 q0, [%[v]], #16\n\t"
      "vldrw.u32 q1, [%[e]], #64\n\t"
      "vldrw.u32 q2, [%[e], #-48]\n\t"
      "vldrw.u32 q3, [%[e], #-32]\n\t"
      "vldrw.u32 q4, [%[e], #-16]\n\t"
      "vmladava.s16 %[a0], q1, q0\n\t"
      "vmladava.s16 %[a1], q2, q0\n\t"
      "vmladava.s16 %[a2], q3, q0\n\t"
      "vmladava.s16 %[a3], q4, q0\n\t"
      "le lr, 2b\n\t"
      "3:\n\t"
      "strd %[a0], %[a1], [%[sums]], #8\n\t"
      "strd %[a2], %[a3], [%[sums]], #8\n\t"
      "add %[et], %[et], %[stride]\n\t"
      "subs %[blocks], %[blocks], #1\n\t"
      "bne 1b\n\t"
      : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [e] "=&r"(e), [v] "=&r"(v),
        [et] "+r"(et), [blocks] "+r"(blocks), [sums] "+r"(sums)
      : [in] "r"(in), [rest] "r"(count - 1), [stride] "r"(stride)
      : "q0", "q1", "q2", "q3", "q4", "lr", "cc", "memory");
}

// g[c] = sat16(g[c] + sat16(round(sums[c] / 2^shift))) for every channel of a row: VRSHL rounds
// (exactly: the sums plus 2^(shift-1) fit int32); eight channels a step, VLD2 splitting the
// even and the odd ones so that VQMOVNB / VQMOVNT saturate them back into channel order.
inline void finish_row(int16_t *g, const int32_t *sums, int32_t co, int32_t shift) {
  const int32x4_t down = vdupq_n_s32(-shift);
  int32_t c = 0;
  for (; c + 8 <= co; c += 8) {
    const int32x4x2_t pair = vld2q_s32(sums + c);
    const int16x8_t steps = vqmovntq_s32(vqmovnbq_s32(vdupq_n_s16(0), vrshlq_s32(pair.val[0], down)),
                                         vrshlq_s32(pair.val[1], down));
    vstrhq_s16(g + c, vqaddq_s16(vldrhq_s16(g + c), steps));
  }
  if (c < co) {  // co % 8 == 4
    const int32x4_t step = tess_mve_ssat16(vrshlq_s32(vldrwq_s32(sums + c), down));
    vstrhq_s32(g + c, tess_mve_ssat16(vaddq_s32(vldrhq_s32(g + c), step)));
  }
}

void conv_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
             const tess_scratch_t *scratch) {
  const tess_conv_shape_t &s = layer->conv;
  // the shape in locals: row_sums' assembly may write any memory
  const int32_t k = s.k, ci_count = s.ci, co = s.co, ow = s.ow, oh = s.oh, h = s.h, pad_top = s.pad_top;
  const int32_t shift = layer->learning->grad_shift, frac = layer->learning->trace_frac;
  const int32_t words = map_words(s);
  const uint32_t block_bytes = 64u * (uint32_t)(oh * ow / 4);  // one block of four channels of et
  uint32_t *et = reinterpret_cast<uint32_t *>(scratch->acc);
  transpose_e(scratch->e, oh * ow, co, et);
  uint32_t *maps = scratch->e;  // e is in et now
  clear_maps(s, maps);
  int32_t *sums = reinterpret_cast<int32_t *>(scratch->gsum);  // co int64: room for co int32
  int16_t *dw = state->g;
  for (int32_t ci = 0; ci < ci_count; ++ci) {
    pack_input(s, state->q, x, frac, ci, maps);
    for (int32_t kh = 0; kh < k; ++kh) {
      // The output rows whose input row kh lies inside the map; none: round(0) = 0 leaves the row.
      const int32_t y0 = pad_top - kh > 0 ? pad_top - kh : 0, y1 = h + pad_top - kh < oh ? h + pad_top - kh : oh;
      if (y0 >= y1) continue;
      // Groups straddling the first or last row read zero rows of the packed map.
      const int32_t g0 = y0 * ow / 4, count = (y1 * ow + 3) / 4 - g0;
      const uint32_t *from = et + 16 * g0, *in = maps + kh * ow + 4 * g0;
      for (int32_t kw = 0; kw < k; ++kw, in += words) {
        row_sums(from, in, count, co / 4, block_bytes, sums);
        finish_row(dw + ((kh * k + kw) * ci_count + ci) * co, sums, co, shift);
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
  // x 2^frac must be an int16 half (int8 inputs: frac <= 8, spikes: frac <= 14); the transposed e
  // fills acc (n words) when the positions are a multiple of 4; the packed maps must fit e (n words).
  // The row sums go in gsum (co int64).
  if (layer->kind != TESS_LAYER_CONV || s.stride != 1 || s.co % 4 != 0 || (s.oh * s.ow) % 4 != 0 ||
      frac > (layer->analog ? 8 : 14) || shift < 1 || shift > 31 || scratch->acc == nullptr ||
      scratch->gsum == nullptr || (int64_t)s.k * map_words(s) > layer->n || !fits32(layer, state, x, scratch->e)) {
    return 0;
  }
  conv_dw(layer, state, x, scratch);
  return 1;
}

}  // extern "C"

#endif
