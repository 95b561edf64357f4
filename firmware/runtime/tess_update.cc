// tess_update.cc: the once-per-sample SGD step with stochastic rounding
// (seeded counter-based generator) from the accumulated dW, which it clears.
// One 32-bit draw rounds two weights: weight i takes the 16-bit half i % 2 of
// draw counter + i / 2.
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"

namespace {

template <typename G>
void sgd_update(int8_t *w, G *g, int32_t count, int32_t channels, const int32_t *mult, const int8_t *shift,
                uint32_t seed, uint32_t counter) {
  int32_t co = 0;
  for (int32_t i = 0; i < count; ++i) {
    // w = clamp(w - rescale(g) with stochastic rounding), the draw's half i % 2.
    const int32_t delta = tess_rescale(g[i], mult[co], shift[co]);
    const uint32_t random = tess_random(seed, counter + (uint32_t)(i / 2)) >> (16 * (i % 2));
    w[i] = (int8_t)tess_clamp32(w[i] + tess_sgd_step(delta, random), -TESS_WEIGHT_MAX, TESS_WEIGHT_MAX);
    g[i] = 0;
    if (++co == channels) co = 0;
  }
}

}  // namespace

extern "C" {

void tess_sgd_update(int8_t *w, int16_t *g, int32_t count, int32_t channels, const int32_t *mult, const int8_t *shift,
                     uint32_t seed, uint32_t counter) {
  sgd_update(w, g, count, channels, mult, shift, seed, counter);
}

void tess_sgd_update32(int8_t *w, int32_t *g, int32_t count, int32_t channels, const int32_t *mult,
                       const int8_t *shift, uint32_t seed, uint32_t counter) {
  sgd_update(w, g, count, channels, mult, shift, seed, counter);
}

void tess_update_spiking(const tess_spiking_t *layer, const tess_spiking_state_t *state, uint32_t seed,
                         uint32_t *counter) {
  const tess_learning_t *l = layer->learning;
  if (!tess_fast_update(state->w, state->g, layer->weight_count, layer->co, l->update_mult, l->update_shift, seed,
                        *counter)) {
    tess_sgd_update(state->w, state->g, layer->weight_count, layer->co, l->update_mult, l->update_shift, seed,
                    *counter);
  }
  *counter += tess_update_draws(layer->weight_count);
}

void tess_update_readout(const tess_readout_t *r, const tess_readout_state_t *s, uint32_t seed, uint32_t *counter) {
  const int32_t count = r->nin * r->classes;
  const int8_t shift = (int8_t)r->update_shift;
  if (!tess_fast_update32(s->w, s->g, count, 1, &r->update_mult, &shift, seed, *counter)) {
    tess_sgd_update32(s->w, s->g, count, 1, &r->update_mult, &shift, seed, *counter);
  }
  uint32_t k = *counter + tess_update_draws(count);
  for (int32_t c = 0; c < r->classes; ++c) {
    const int32_t delta = tess_rescale(s->gb[c], r->update_mult, r->update_shift);
    s->b[c] = tess_sat32((int64_t)s->b[c] + tess_sgd_step(delta, tess_random(seed, k++)));
    s->gb[c] = 0;
  }
  *counter = k;
}

}  // extern "C"
