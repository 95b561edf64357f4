// tess_dw_fast.cc: the conv layers' dW correlation (tess_dw.cc), exactly the
// reference's int64 arithmetic, reordered: for each weight row (kh, kw, ci) the
// positions whose trace or input is non-zero are listed once (16 at a time),
// then each block of four output channels sums over the list with its int64
// sums in registers, one SMLAL (32 x 32 + 64) per synapse and position.
#include "tess_fast.h"

#include "tess_simd.h"

#if defined(TESS_FAST)

namespace {

constexpr int32_t kListSize = 16;

struct Entry {
  int32_t out, q, x;  // first e index of the position, trace, input * 2^frac
};

// Adds one list of positions into gsum[0 .. co) (four channels at a time).
template <bool kPost>
void correlate(const Entry *list, int32_t count, const int32_t *e_pre, const int32_t *e_post, int32_t co,
               int64_t *gsum) {
  for (int32_t c0 = 0; c0 < co; c0 += 4) {
    int64_t a0 = gsum[c0], a1 = gsum[c0 + 1], a2 = gsum[c0 + 2], a3 = gsum[c0 + 3];
    for (int32_t i = 0; i < count; ++i) {
      const int32_t *pre = e_pre + list[i].out + c0;
      const int32_t qv = list[i].q;
      a0 += (int64_t)pre[0] * qv;
      a1 += (int64_t)pre[1] * qv;
      a2 += (int64_t)pre[2] * qv;
      a3 += (int64_t)pre[3] * qv;
      if (!kPost || list[i].x == 0) continue;
      const int32_t *post = e_post + list[i].out + c0;
      const int32_t xv = list[i].x;
      a0 += (int64_t)post[0] * xv;
      a1 += (int64_t)post[1] * xv;
      a2 += (int64_t)post[2] * xv;
      a3 += (int64_t)post[3] * xv;
    }
    gsum[c0] = a0;
    gsum[c0 + 1] = a1;
    gsum[c0 + 2] = a2;
    gsum[c0 + 3] = a3;
  }
}

template <bool kPost>
void conv_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
             const tess_scratch_t *scratch) {
  const tess_conv_shape_t &s = layer->conv;
  const tess_learning_t *l = layer->learning;
  const int32_t one = 1 << l->trace_frac;
  int64_t *gsum = scratch->gsum;
  Entry list[kListSize];
  for (int32_t kh = 0; kh < s.k; ++kh) {
    for (int32_t kw = 0; kw < s.k; ++kw) {
      for (int32_t ci = 0; ci < s.ci; ++ci) {
        for (int32_t c = 0; c < s.co; ++c) gsum[c] = 0;
        int32_t count = 0;
        for (int32_t oy = 0; oy < s.oh; ++oy) {
          const int32_t iy = oy * s.stride + kh - s.pad_top;
          if (iy < 0 || iy >= s.h) continue;
          for (int32_t ox = 0; ox < s.ow; ++ox) {
            const int32_t ix = ox * s.stride + kw - s.pad_left;
            if (ix < 0 || ix >= s.w) continue;
            const int32_t in = (iy * s.w + ix) * s.ci + ci;
            const int32_t qv = state->q[in], xv = kPost ? x[in] * one : 0;
            if (qv == 0 && xv == 0) continue;
            list[count++] = {(oy * s.ow + ox) * s.co, qv, xv};
            if (count == kListSize) {
              correlate<kPost>(list, count, scratch->e_pre, scratch->e_post, s.co, gsum);
              count = 0;
            }
          }
        }
        if (count > 0) correlate<kPost>(list, count, scratch->e_pre, scratch->e_post, s.co, gsum);
        int32_t *g = state->g + ((kh * s.k + kw) * s.ci + ci) * s.co;
        for (int32_t c = 0; c < s.co; ++c) g[c] = tess_sat32((int64_t)g[c] + (gsum[c] >> l->grad_shift));
      }
    }
  }
}

}  // namespace

extern "C" {

int32_t tess_fast_accumulate_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                                const tess_scratch_t *scratch) {
  if (layer->kind != TESS_LAYER_CONV || layer->co % 4 != 0) return 0;
  if (layer->learning->alpha_post != 0) {
    conv_dw<true>(layer, state, x, scratch);
  } else {
    conv_dw<false>(layer, state, x, scratch);
  }
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_fast_accumulate_dw(const tess_spiking_t *, const tess_spiking_state_t *, const int8_t *,
                                const tess_scratch_t *) {
  return 0;
}

}  // extern "C"

#endif
