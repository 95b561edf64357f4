// tess_state.cc: learning that survives a reset: the learnable parameters to
// and from a caller's buffer, with a format version, a model id and a CRC32
// (layout in tess_model.h).
#include "tess_model.h"

#include "tess_runtime.h"

namespace {

inline void put32(uint8_t *at, uint32_t value) {
  for (int byte = 0; byte < 4; ++byte) at[byte] = (uint8_t)(value >> (8 * byte));
}

inline uint32_t get32(const uint8_t *at) {
  return (uint32_t)at[0] | ((uint32_t)at[1] << 8) | ((uint32_t)at[2] << 16) | ((uint32_t)at[3] << 24);
}

uint32_t payload_bytes(const tess_model_desc_t *d) {
  uint32_t total = 0;
  for (int32_t i = 0; i < d->num_spiking; ++i) {
    if (d->spiking[i].learning != nullptr) total += (uint32_t)d->spiking[i].weight_count;
  }
  if (d->readout->learn) total += (uint32_t)(d->readout->nin * d->readout->classes + 4 * d->readout->classes);
  return total;
}

// The learnable parameters, in layer order, to a payload (save) or from it (load).
void copy_parameters(const tess_model_t *m, uint8_t *save_to, const uint8_t *load_from) {
  const tess_model_desc_t *d = m->desc;
  uint32_t at = 0;
  for (int32_t i = 0; i < d->num_spiking; ++i) {
    if (d->spiking[i].learning == nullptr) continue;
    int8_t *w = m->spiking[i].w;
    for (int32_t k = 0; k < d->spiking[i].weight_count; ++k, ++at) {
      if (save_to != nullptr) save_to[at] = (uint8_t)w[k];
      else w[k] = (int8_t)load_from[at];
    }
  }
  if (!d->readout->learn) return;
  const tess_readout_t *r = d->readout;
  for (int32_t k = 0; k < r->nin * r->classes; ++k, ++at) {
    if (save_to != nullptr) save_to[at] = (uint8_t)m->readout->w[k];
    else m->readout->w[k] = (int8_t)load_from[at];
  }
  for (int32_t c = 0; c < r->classes; ++c, at += 4) {
    if (save_to != nullptr) put32(save_to + at, (uint32_t)m->readout->b[c]);
    else m->readout->b[c] = (int32_t)get32(load_from + at);
  }
}

}  // namespace

extern "C" {

uint32_t tess_model_state_bytes(const tess_model_t *m) {
  return m == nullptr ? 0u : TESS_STATE_HEADER_BYTES + payload_bytes(m->desc) + 4u;
}

tess_status_t tess_model_save_state(const tess_model_t *m, uint8_t *buffer, uint32_t capacity, uint32_t *written) {
  if (written != nullptr) *written = 0;
  if (m == nullptr || buffer == nullptr) return TESS_ERROR_NULL;
  const uint32_t bytes = tess_model_state_bytes(m);
  if (capacity < bytes) return TESS_ERROR_BUFFER_TOO_SMALL;
  buffer[0] = 'T';
  buffer[1] = 'E';
  buffer[2] = 'S';
  buffer[3] = 'S';
  buffer[4] = (uint8_t)(TESS_STATE_FORMAT_VERSION & 0xFF);
  buffer[5] = (uint8_t)(TESS_STATE_FORMAT_VERSION >> 8);
  buffer[6] = (uint8_t)(TESS_STATE_HEADER_BYTES & 0xFF);
  buffer[7] = (uint8_t)(TESS_STATE_HEADER_BYTES >> 8);
  put32(buffer + 8, m->desc->model_id);
  put32(buffer + 12, payload_bytes(m->desc));
  put32(buffer + 16, m->random_counter);
  copy_parameters(m, buffer + TESS_STATE_HEADER_BYTES, nullptr);
  put32(buffer + bytes - 4, tess_crc32(0u, buffer, bytes - 4));
  if (written != nullptr) *written = bytes;
  return TESS_OK;
}

tess_status_t tess_model_load_state(tess_model_t *m, const uint8_t *buffer, uint32_t length) {
  if (m == nullptr || buffer == nullptr) return TESS_ERROR_NULL;
  const uint32_t bytes = tess_model_state_bytes(m);
  if (length < TESS_STATE_HEADER_BYTES + 4u) return TESS_ERROR_TRUNCATED;
  if (buffer[0] != 'T' || buffer[1] != 'E' || buffer[2] != 'S' || buffer[3] != 'S') return TESS_ERROR_NOT_A_STATE;
  if ((uint32_t)(buffer[4] | (buffer[5] << 8)) != TESS_STATE_FORMAT_VERSION) return TESS_ERROR_VERSION;
  if ((uint32_t)(buffer[6] | (buffer[7] << 8)) != TESS_STATE_HEADER_BYTES) return TESS_ERROR_VERSION;
  if (get32(buffer + 8) != m->desc->model_id || get32(buffer + 12) != payload_bytes(m->desc)) {
    return TESS_ERROR_OTHER_MODEL;
  }
  if (length < bytes) return TESS_ERROR_TRUNCATED;
  if (get32(buffer + bytes - 4) != tess_crc32(0u, buffer, bytes - 4)) return TESS_ERROR_CHECKSUM;
  // Everything checked: only now does the model change.
  m->random_counter = get32(buffer + 16);
  copy_parameters(m, nullptr, buffer + TESS_STATE_HEADER_BYTES);
  return TESS_OK;
}

tess_status_t tess_model_clear_state(tess_model_t *m) {
  if (m == nullptr) return TESS_ERROR_NULL;
  const tess_model_desc_t *d = m->desc;
  for (int32_t i = 0; i < d->num_spiking; ++i) {
    if (d->spiking[i].learning == nullptr) continue;
    for (int32_t k = 0; k < d->spiking[i].weight_count; ++k) {
      m->spiking[i].w[k] = 0;
      m->spiking[i].g[k] = 0;
    }
  }
  if (d->readout->learn) {
    for (int32_t k = 0; k < d->readout->nin * d->readout->classes; ++k) {
      m->readout->w[k] = 0;
      m->readout->g[k] = 0;
    }
    for (int32_t c = 0; c < d->readout->classes; ++c) {
      m->readout->b[c] = 0;
      m->readout->gb[c] = 0;
    }
  }
  m->random_counter = 0;
  return TESS_OK;
}

}  // extern "C"
