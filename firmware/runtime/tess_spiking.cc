// tess_spiking.cc: the forward step of a LIF layer (conv or dense): synaptic
// currents, traces, membranes and spikes, and its synaptic-event count.
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"
#include "tess_simd.h"

namespace {

// The output rows (columns) input row iy reaches through kernel row kh, or -1.
inline int32_t output_index(int32_t i, int32_t pad, int32_t kernel_tap, int32_t stride, int32_t size) {
  const int32_t n = i + pad - kernel_tap;
  if (n < 0 || n % stride != 0 || n / stride >= size) return -1;
  return n / stride;
}

// Event-driven convolution: each non-zero input scatters its weights into the outputs it reaches.
void conv_currents(const tess_spiking_t *layer, const int8_t *weights, const int8_t *x, int32_t *acc, int32_t dense) {
  const tess_conv_shape_t &s = layer->conv;
  const bool spikes = !layer->analog && !dense;
  const int32_t tap_stride = s.ci * s.co;  // one kernel column
  for (int32_t iy = 0; iy < s.h; ++iy) {
    for (int32_t ix = 0; ix < s.w; ++ix) {
      const int8_t *pixel = x + (iy * s.w + ix) * s.ci;
      for (int32_t ci = 0; ci < s.ci; ++ci) {
        const int32_t value = pixel[ci];
        if (value == 0 && !dense) continue;
        for (int32_t kh = 0; kh < s.k; ++kh) {
          const int32_t oy = output_index(iy, s.pad_top, kh, s.stride, s.oh);
          if (oy < 0) continue;
          for (int32_t kw = 0; kw < s.k; ++kw) {
            const int32_t ox = output_index(ix, s.pad_left, kw, s.stride, s.ow);
            if (ox < 0) continue;
            const int8_t *w = weights + (kh * s.k + kw) * tap_stride + ci * s.co;
            int32_t *out = acc + (oy * s.ow + ox) * s.co;
            if (spikes) {
              tess_add_row(out, w, s.co);
            } else {
              tess_mac_row(out, w, value, s.co);
            }
          }
        }
      }
    }
  }
}

}  // namespace

extern "C" {

void tess_spiking_currents(const tess_spiking_t *layer, const int8_t *weights, const int8_t *x, int32_t *acc,
                           int32_t dense) {
  for (int32_t n = 0; n < layer->n; ++n) acc[n] = 0;
  if (layer->kind == TESS_LAYER_CONV) {
    conv_currents(layer, weights, x, acc, dense);
    return;
  }
  const bool spikes = !layer->analog && !dense;
  for (int32_t i = 0; i < layer->nin; ++i) {
    const int32_t value = x[i];
    if (value == 0 && !dense) continue;
    const int8_t *w = weights + i * layer->co;
    if (spikes) {
      tess_add_row(acc, w, layer->co);
    } else {
      tess_mac_row(acc, w, value, layer->co);
    }
  }
}

void tess_spiking_traces(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t t) {
  const tess_learning_t *learning = layer->learning;
  const int32_t one = 1 << learning->trace_frac;
  for (int32_t i = 0; i < layer->nin; ++i) {
    state->q[i] = tess_sat16(tess_round_shift((int64_t)state->q[i] * learning->lambda_pre, 15) + (int64_t)x[i] * one);
  }
  if (learning->alpha_post == 0) return;
  // h[0] = 0: at the first step there is no past membrane (not psi(0)).
  for (int32_t n = 0; n < layer->n; ++n) {
    const int32_t past = t > 0 ? tess_psi_q15(state->u[n], layer->threshold, layer->psi_scale) : 0;
    state->h[n] = tess_sat16(tess_round_shift((int64_t)state->h[n] * learning->lambda_post, 15) + past);
  }
}

void tess_spiking_fire(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *acc) {
  // Soft reset after the leak: u = gamma (u - r o) + I (r = v_th unless the model says otherwise).
  int32_t co = 0;
  for (int32_t n = 0; n < layer->n; ++n) {
    const int32_t current = tess_rescale(acc[n], layer->current_mult[co], layer->current_shift[co]);
    const int64_t leak = tess_round_shift((int64_t)(state->u[n] - layer->reset_amount * state->o[n]) * layer->gamma, 15);
    state->u[n] = tess_sat16(leak + current);
    state->o[n] = state->u[n] >= layer->threshold ? 1 : 0;
    if (++co == layer->co) co = 0;
  }
}

void tess_spiking_step(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t learn,
                       int32_t t, const tess_scratch_t *scratch, int32_t dense) {
  const int8_t *weights = state->w != nullptr ? state->w : layer->weights;
  if (dense || !tess_fast_currents(layer, weights, x, scratch->acc, scratch->mask, scratch->packed)) {
    tess_spiking_currents(layer, weights, x, scratch->acc, dense);
  }
  if (learn && layer->learning != nullptr && !tess_fast_traces(layer, state, x, t)) {
    tess_spiking_traces(layer, state, x, t);
  }
  if (!tess_fast_fire(layer, state, scratch->acc)) tess_spiking_fire(layer, state, scratch->acc);
}

uint32_t tess_spiking_events(const tess_spiking_t *layer, const int8_t *x) {
  uint32_t events = 0;
  if (layer->kind != TESS_LAYER_CONV) {
    for (int32_t i = 0; i < layer->nin; ++i) events += x[i] != 0 ? (uint32_t)layer->co : 0u;
    return events;
  }
  // Every non-zero input reaches co outputs through each kernel tap that lands on the output grid.
  const tess_conv_shape_t &s = layer->conv;
  for (int32_t iy = 0; iy < s.h; ++iy) {
    int32_t rows = 0;
    for (int32_t kh = 0; kh < s.k; ++kh) rows += output_index(iy, s.pad_top, kh, s.stride, s.oh) >= 0 ? 1 : 0;
    for (int32_t ix = 0; ix < s.w; ++ix) {
      int32_t cols = 0;
      for (int32_t kw = 0; kw < s.k; ++kw) cols += output_index(ix, s.pad_left, kw, s.stride, s.ow) >= 0 ? 1 : 0;
      uint32_t active = 0;
      for (int32_t ci = 0; ci < s.ci; ++ci) active += x[(iy * s.w + ix) * s.ci + ci] != 0 ? 1u : 0u;
      events += active * (uint32_t)(rows * cols) * (uint32_t)s.co;
    }
  }
  return events;
}

}  // extern "C"
