// tess_dw.cc: the learning step's correlation, dW = sat16(dW + sat16(round(sum /
// 2^grad_shift))) with sum = e_pre (x) q + e_post (x) x 2^frac over the output
// positions, exact (int64); e_pre / e_post are the int16 halves of scratch->e.
#include "tess_kernels.h"
#include "tess_runtime.h"

namespace {

inline int32_t low16(uint32_t pair) { return (int16_t)(pair & 0xFFFFu); }
inline int32_t high16(uint32_t pair) { return (int16_t)(pair >> 16); }

// The exact per-channel sum of one weight row: e_pre[out] * q + e_post[out] * x * 2^frac.
inline void correlate(int64_t *sum, const uint32_t *e, int64_t qv, int64_t xv, int32_t count) {
  for (int32_t co = 0; co < count; ++co) sum[co] += low16(e[co]) * qv + high16(e[co]) * xv;
}

// The rounded step of each channel into its saturating int16 accumulator.
inline void add_rounded(int16_t *g, const int64_t *sum, int32_t shift, int32_t count) {
  for (int32_t co = 0; co < count; ++co) {
    g[co] = tess_sat16((int64_t)g[co] + tess_sat16(tess_round_shift(sum[co], shift)));
  }
}

void conv_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, const tess_scratch_t *s) {
  const tess_conv_shape_t &c = layer->conv;
  const tess_learning_t *l = layer->learning;
  const int32_t one = 1 << l->trace_frac;
  int64_t *gsum = s->gsum;
  for (int32_t kh = 0; kh < c.k; ++kh) {
    for (int32_t kw = 0; kw < c.k; ++kw) {
      for (int32_t ci = 0; ci < c.ci; ++ci) {
        for (int32_t co = 0; co < c.co; ++co) gsum[co] = 0;
        bool any = false;
        for (int32_t oy = 0; oy < c.oh; ++oy) {
          const int32_t iy = oy * c.stride + kh - c.pad_top;
          if (iy < 0 || iy >= c.h) continue;
          for (int32_t ox = 0; ox < c.ow; ++ox) {
            const int32_t ix = ox * c.stride + kw - c.pad_left;
            if (ix < 0 || ix >= c.w) continue;
            const int32_t in = (iy * c.w + ix) * c.ci + ci;
            const int64_t qv = state->q[in], xv = (int64_t)x[in] * one;
            if (qv == 0 && xv == 0) continue;
            correlate(gsum, s->e + (oy * c.ow + ox) * c.co, qv, xv, c.co);
            any = true;
          }
        }
        // A row no position reaches adds round(0) = 0: nothing to do.
        if (any) add_rounded(state->g + ((kh * c.k + kw) * c.ci + ci) * c.co, gsum, l->grad_shift, c.co);
      }
    }
  }
}

}  // namespace

extern "C" {

void tess_accumulate_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                        const tess_scratch_t *scratch) {
  if (layer->kind == TESS_LAYER_CONV) {
    conv_dw(layer, state, x, scratch);
    return;
  }
  const tess_learning_t *l = layer->learning;
  const int32_t one = 1 << l->trace_frac;
  for (int32_t i = 0; i < layer->nin; ++i) {
    const int64_t qv = state->q[i], xv = (int64_t)x[i] * one;
    if (qv == 0 && xv == 0) continue;
    int64_t *sum = scratch->gsum;
    for (int32_t co = 0; co < layer->co; ++co) sum[co] = 0;
    correlate(sum, scratch->e, qv, xv, layer->co);
    add_rounded(state->g + i * layer->co, sum, l->grad_shift, layer->co);
  }
}

}  // extern "C"
