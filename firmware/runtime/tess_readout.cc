// tess_readout.cc: the linear readout's logits and, when it learns, the
// cross-entropy update of the instantaneous logits on detached inputs.
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>
#endif

namespace {

// g[c] = sat32(g[c] + err[c]) for every class: VQADD four classes at a time on Helium, QADD
// on the DSP cores.
inline void add_error(int32_t *g, const int32_t *err, int32_t classes) {
#if defined(TESS_MVE)
  for (int32_t c = 0; c < classes; c += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(classes - c));
    vstrwq_p_s32(g + c, vqaddq_s32(vldrwq_z_s32(g + c, p), vldrwq_z_s32(err + c, p)), p);
  }
#elif defined(TESS_FAST) && !defined(TESS_KERNELS_EMULATE_DSP)
  for (int32_t c = 0; c < classes; ++c) g[c] = __qadd(g[c], err[c]);
#else
  for (int32_t c = 0; c < classes; ++c) g[c] = tess_sat32((int64_t)g[c] + err[c]);
#endif
}

}  // namespace

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
    add_error(s->g + i * r->classes, scratch->err, r->classes);
  }
  add_error(s->gb, scratch->err, r->classes);
}

}  // extern "C"
