// tess_update.cc: the once-per-sample SGD step with stochastic rounding
// (seeded counter-based generator) from the accumulated dW, which it clears.
#include "tess_kernels.h"
#include "tess_runtime.h"

namespace {

// w = clamp(w - rescale(g) with stochastic rounding); one draw per weight, in order.
inline int8_t sgd_weight(int8_t w, int32_t g, int32_t mult, int32_t shift, uint32_t seed, uint32_t counter) {
  const int32_t delta = tess_rescale(g, mult, shift);
  return (int8_t)tess_clamp32(w + tess_sgd_step(delta, tess_random(seed, counter)), -TESS_WEIGHT_MAX, TESS_WEIGHT_MAX);
}

}  // namespace

extern "C" {

void tess_update_spiking(const tess_spiking_t *layer, const tess_spiking_state_t *state, uint32_t seed, uint32_t *counter) {
  const tess_learning_t *l = layer->learning;
  uint32_t k = *counter;
  int32_t co = 0;
  for (int32_t i = 0; i < layer->weight_count; ++i) {
    state->w[i] = sgd_weight(state->w[i], state->g[i], l->update_mult[co], l->update_shift[co], seed, k++);
    state->g[i] = 0;
    if (++co == layer->co) co = 0;
  }
  *counter = k;
}

void tess_update_readout(const tess_readout_t *r, const tess_readout_state_t *s, uint32_t seed, uint32_t *counter) {
  uint32_t k = *counter;
  for (int32_t i = 0; i < r->nin * r->classes; ++i) {
    s->w[i] = sgd_weight(s->w[i], s->g[i], r->update_mult, r->update_shift, seed, k++);
    s->g[i] = 0;
  }
  for (int32_t c = 0; c < r->classes; ++c) {
    const int32_t delta = tess_rescale(s->gb[c], r->update_mult, r->update_shift);
    s->b[c] = tess_sat32((int64_t)s->b[c] + tess_sgd_step(delta, tess_random(seed, k++)));
    s->gb[c] = 0;
  }
  *counter = k;
}

}  // extern "C"
