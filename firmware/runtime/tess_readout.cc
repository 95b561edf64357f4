// tess_readout.cc: the linear readout's logits and, when it learns, the
// cross-entropy update of the instantaneous logits on detached inputs.
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"
#include "tess_simd.h"

extern "C" {

void tess_readout_currents(const tess_readout_t *r, const int8_t *weights, const uint8_t *x, int32_t *acc,
                           int32_t dense) {
  for (int32_t c = 0; c < r->classes; ++c) acc[c] = 0;
  for (int32_t i = 0; i < r->nin; ++i) {
    if (dense) {
      tess_mac_row(acc, weights + i * r->classes, x[i], r->classes);
    } else if (x[i]) {
      tess_add_row(acc, weights + i * r->classes, r->classes);
    }
  }
}

void tess_readout_step(const tess_readout_t *r, const tess_readout_state_t *s, const uint8_t *x, int32_t learn,
                       int32_t label, const tess_scratch_t *scratch, int32_t dense) {
  const int8_t *weights = s->w != nullptr ? s->w : r->weights;
  const int32_t *bias = s->b != nullptr ? s->b : r->bias;
  int32_t *acc = scratch->acc;
  if (dense || !tess_fast_readout(r, weights, x, acc, scratch->mask)) tess_readout_currents(r, weights, x, acc, dense);
  for (int32_t c = 0; c < r->classes; ++c) {
    s->step_logits[c] = tess_sat32((int64_t)bias[c] + acc[c]);
    s->logit_sum[c] = tess_sat32((int64_t)s->logit_sum[c] + s->step_logits[c]);
  }
  if (!learn || !r->learn) return;
  // dW = x (softmax(z) - y) with z the logits in Q12.
  for (int32_t c = 0; c < r->classes; ++c) {
    scratch->z[c] = tess_rescale(s->step_logits[c], r->logit_mult, r->logit_shift);
  }
  tess_softmax_error(scratch->z, r->classes, label, scratch->err);
  for (int32_t i = 0; i < r->nin; ++i) {
    if (!x[i]) continue;
    int32_t *g = s->g + i * r->classes;
    for (int32_t c = 0; c < r->classes; ++c) g[c] = tess_sat32((int64_t)g[c] + scratch->err[c]);
  }
  for (int32_t c = 0; c < r->classes; ++c) s->gb[c] = tess_sat32((int64_t)s->gb[c] + scratch->err[c]);
}

}  // extern "C"
