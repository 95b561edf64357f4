// tess_model.cc: runs a model's call list (tess_model.h): the time step, the
// once-per-sample update, the prediction, the state hash and the profile.
#include "tess_model.h"

#include "tess_runtime.h"

namespace {

inline void mark(const tess_model_t *m, int32_t layer) {
  if (m->hook != nullptr) m->hook(layer, m->hook_context);
}

const int8_t *source_of(const tess_model_t *m, uint8_t source, uint8_t index, const int8_t *input) {
  switch (source) {
    case TESS_SOURCE_SPIKES:
      return reinterpret_cast<const int8_t *>(m->spiking[index].o);
    case TESS_SOURCE_POOL:
      return reinterpret_cast<const int8_t *>(m->pool_out[index]);
    default:
      return input;
  }
}

uint32_t hash_bytes(uint32_t state, const int8_t *data, int32_t count) {
  for (int32_t i = 0; i < count; ++i) state = tess_fnv1a_byte(state, (uint8_t)data[i]);
  return state;
}

}  // namespace

extern "C" {

tess_status_t tess_model_reset(tess_model_t *m) {
  if (m == nullptr) return TESS_ERROR_NULL;
  const tess_model_desc_t *d = m->desc;
  for (int32_t i = 0; i < d->num_spiking; ++i) {
    const tess_spiking_t &layer = d->spiking[i];
    const tess_spiking_state_t &s = m->spiking[i];
    for (int32_t n = 0; n < layer.n; ++n) {
      s.u[n] = 0;
      s.o[n] = 0;
    }
    if (layer.learning == nullptr) continue;
    for (int32_t n = 0; n < layer.nin; ++n) s.q[n] = 0;
    if (layer.learning->alpha_post != 0) {
      for (int32_t n = 0; n < layer.n; ++n) s.h[n] = 0;
    }
  }
  for (int32_t c = 0; c < d->num_classes; ++c) {
    m->readout->step_logits[c] = 0;
    m->readout->logit_sum[c] = 0;
  }
  m->t = 0;
  return TESS_OK;
}

tess_status_t tess_model_step(tess_model_t *m, const int8_t *input, int32_t label) {
  if (m == nullptr || input == nullptr) return TESS_ERROR_NULL;
  const tess_model_desc_t *d = m->desc;
  if (label < -1 || label >= d->num_classes) return TESS_ERROR_LABEL;
  const int32_t learn = label >= 0;
  int32_t layer = TESS_PROFILE_OUTSIDE - 1;
  for (int32_t c = 0; c < d->num_calls; ++c) {
    const tess_call_t &call = d->calls[c];
    if (call.layer != layer) mark(m, layer = call.layer);
    const int8_t *x = source_of(m, call.source, call.source_index, input);
    switch (call.op) {
      case TESS_CALL_SPIKING:
        tess_spiking_step(&d->spiking[call.index], &m->spiking[call.index], x, learn, m->t, &m->scratch,
                          d->dense_reference);
        break;
      case TESS_CALL_LEARN:
        if (learn && m->t >= d->first_learning_step) {
          const uint8_t *block = call.block >= 0 ? m->pool_out[call.block] : nullptr;
          tess_learn_step(&d->spiking[call.index], &m->spiking[call.index], x, block, d->num_classes, label,
                          &m->scratch);
        }
        break;
      case TESS_CALL_POOL:
        tess_pool_step(&d->pools[call.index], reinterpret_cast<const uint8_t *>(x), m->pool_out[call.index]);
        break;
      default:
        tess_readout_step(d->readout, m->readout, reinterpret_cast<const uint8_t *>(x), learn, label, &m->scratch,
                          d->dense_reference);
        break;
    }
  }
  mark(m, TESS_PROFILE_OUTSIDE);
  ++m->t;
  return TESS_OK;
}

tess_status_t tess_model_apply_update(tess_model_t *m) {
  if (m == nullptr) return TESS_ERROR_NULL;
  const tess_model_desc_t *d = m->desc;
  for (int32_t i = 0; i < d->num_spiking; ++i) {
    if (d->spiking[i].learning == nullptr) continue;
    mark(m, d->spiking_layer[i]);
    tess_update_spiking(&d->spiking[i], &m->spiking[i], d->seed, &m->random_counter);
  }
  if (d->readout->learn) {
    mark(m, d->readout_layer);
    tess_update_readout(d->readout, m->readout, d->seed, &m->random_counter);
  }
  mark(m, TESS_PROFILE_OUTSIDE);
  return TESS_OK;
}

tess_status_t tess_model_predict(const tess_model_t *m, int32_t *predicted) {
  if (m == nullptr || predicted == nullptr) return TESS_ERROR_NULL;
  const int32_t *sum = m->readout->logit_sum;
  int32_t best = 0;
  for (int32_t c = 1; c < m->desc->num_classes; ++c) {
    if (sum[c] > sum[best]) best = c;
  }
  *predicted = best;
  return TESS_OK;
}

tess_status_t tess_model_logits(const tess_model_t *m, const int32_t **logits) {
  if (m == nullptr || logits == nullptr) return TESS_ERROR_NULL;
  *logits = m->readout->logit_sum;
  return TESS_OK;
}

tess_status_t tess_model_state_hash(const tess_model_t *m, uint32_t *hash) {
  if (m == nullptr || hash == nullptr) return TESS_ERROR_NULL;
  const tess_model_desc_t *d = m->desc;
  uint32_t state = TESS_FNV_OFFSET;
  for (int32_t i = 0; i < d->num_spiking; ++i) {
    if (d->spiking[i].learning != nullptr) state = hash_bytes(state, m->spiking[i].w, d->spiking[i].weight_count);
  }
  if (d->readout->learn) {
    state = hash_bytes(state, m->readout->w, d->readout->nin * d->readout->classes);
    for (int32_t c = 0; c < d->num_classes; ++c) {
      const uint32_t value = (uint32_t)m->readout->b[c];
      for (int32_t byte = 0; byte < 4; ++byte) state = tess_fnv1a_byte(state, (uint8_t)(value >> (8 * byte)));
    }
  }
  *hash = state;
  return TESS_OK;
}

tess_status_t tess_model_set_profile_hook(tess_model_t *m, tess_profile_hook_t hook, void *context) {
  if (m == nullptr) return TESS_ERROR_NULL;
  m->hook = hook;
  m->hook_context = context;
  return TESS_OK;
}

const char *tess_model_layer_name(const tess_model_t *m, int32_t layer) {
  if (m == nullptr || layer < 0 || layer >= m->desc->num_layers) return nullptr;
  return m->desc->layer_names[layer];
}

tess_status_t tess_model_synaptic_events(const tess_model_t *m, int32_t layer, const int8_t *input,
                                         uint32_t *events) {
  if (m == nullptr || input == nullptr || events == nullptr) return TESS_ERROR_NULL;
  const tess_model_desc_t *d = m->desc;
  if (layer < 0 || layer >= d->num_layers) return TESS_ERROR_LAYER;
  *events = 0;  // pools and flatten: none
  for (int32_t c = 0; c < d->num_calls; ++c) {
    const tess_call_t &call = d->calls[c];
    if (call.layer != layer) continue;
    const int8_t *x = source_of(m, call.source, call.source_index, input);
    if (call.op == TESS_CALL_SPIKING) {
      *events = tess_spiking_events(&d->spiking[call.index], x);
    } else if (call.op == TESS_CALL_READOUT) {
      for (int32_t i = 0; i < d->readout->nin; ++i) *events += x[i] != 0 ? (uint32_t)d->readout->classes : 0u;
    }
  }
  return TESS_OK;
}

}  // extern "C"
