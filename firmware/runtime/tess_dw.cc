// tess_dw.cc: dW += (e_pre (x) q + e_post (x) x) >> grad_shift, the learning
// step's correlation, summed exactly (int64) over the output positions first.
#include "tess_kernels.h"
#include "tess_runtime.h"

namespace {

// The exact per-channel sum of one weight row: e_pre[out] * q (+ e_post[out] * x * 2^frac).
inline void correlate(int64_t *sum, const int32_t *e_pre, const int32_t *e_post, int64_t qv, int64_t xv,
                      int32_t count) {
  if (e_post != nullptr && xv != 0) {
    for (int32_t co = 0; co < count; ++co) sum[co] += e_pre[co] * qv + e_post[co] * xv;
  } else {
    for (int32_t co = 0; co < count; ++co) sum[co] += e_pre[co] * qv;
  }
}

inline void add_shifted(int32_t *g, const int64_t *sum, int32_t shift, int32_t count) {
  for (int32_t co = 0; co < count; ++co) g[co] = tess_sat32((int64_t)g[co] + (sum[co] >> shift));
}

void conv_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, const tess_scratch_t *s) {
  const tess_conv_shape_t &c = layer->conv;
  const tess_learning_t *l = layer->learning;
  const int32_t one = 1 << l->trace_frac;
  const int32_t *e_post = l->alpha_post != 0 ? s->e_post : nullptr;
  int64_t *gsum = s->gsum;
  for (int32_t kh = 0; kh < c.k; ++kh) {
    for (int32_t kw = 0; kw < c.k; ++kw) {
      for (int32_t ci = 0; ci < c.ci; ++ci) {
        for (int32_t co = 0; co < c.co; ++co) gsum[co] = 0;
        for (int32_t oy = 0; oy < c.oh; ++oy) {
          const int32_t iy = oy * c.stride + kh - c.pad_top;
          if (iy < 0 || iy >= c.h) continue;
          for (int32_t ox = 0; ox < c.ow; ++ox) {
            const int32_t ix = ox * c.stride + kw - c.pad_left;
            if (ix < 0 || ix >= c.w) continue;
            const int32_t in = (iy * c.w + ix) * c.ci + ci;
            const int64_t qv = state->q[in], xv = (int64_t)x[in] * one;
            if (qv == 0 && xv == 0) continue;
            const int32_t out = (oy * c.ow + ox) * c.co;
            correlate(gsum, s->e_pre + out, e_post == nullptr ? nullptr : e_post + out, qv, xv, c.co);
          }
        }
        add_shifted(state->g + ((kh * c.k + kw) * c.ci + ci) * c.co, gsum, l->grad_shift, c.co);
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
  const int32_t *e_post = l->alpha_post != 0 ? scratch->e_post : nullptr;
  for (int32_t i = 0; i < layer->nin; ++i) {
    const int64_t qv = state->q[i], xv = (int64_t)x[i] * one;
    if (qv == 0 && xv == 0) continue;
    int64_t *sum = scratch->gsum;
    for (int32_t co = 0; co < layer->co; ++co) sum[co] = 0;
    correlate(sum, scratch->e_pre, e_post, qv, xv, layer->co);
    add_shifted(state->g + i * layer->co, sum, l->grad_shift, layer->co);
  }
}

}  // extern "C"
