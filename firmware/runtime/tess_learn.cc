// tess_learn.cc: the TESS update of one learning layer at one step: the local
// learning signal (LSG), the eligibility terms e_pre / e_post and the
// accumulation of dW (applied once per sample by tess_update_spiking).
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"

namespace {

inline int32_t lsg_sign(const uint8_t *row, int32_t k) {
  if (k == 0) return 0;
  return ((row[k >> 3] >> (k & 7)) & 1) ? 1 : -1;
}

// Spike counts per LSG cell of a conv layer's map (adaptive windows may overlap), times L / area.
// Row by row and column by column, so no position needs a division.
void count_cells(const tess_learning_t *l, const uint8_t *map, int32_t *cells) {
  const int32_t k = l->lsg_pool, kk = k * k, channels = l->map_c;
  for (int32_t i = 0; i < l->lsg_size; ++i) cells[i] = 0;
  for (int32_t y = 0; y < l->map_h; ++y) {
    for (int32_t x = 0; x < l->map_w; ++x) {
      const uint8_t *spikes = map + (y * l->map_w + x) * channels;
      for (int32_t i = l->rlo[y]; i <= l->rhi[y]; ++i) {
        for (int32_t j = l->clo[x]; j <= l->chi[x]; ++j) {
          int32_t *cell = cells + i * k + j;
          for (int32_t c = 0; c < channels; ++c) cell[c * kk] += spikes[c];
        }
      }
    }
  }
  for (int32_t i = 0; i < l->lsg_size; ++i) cells[i] *= l->cell_weight[i % kk];
}

// g per position of the LSG map: the sum of the cell signals over the cells it lies in (pool^T).
void gather_cells(const tess_learning_t *l, const int32_t *cells, int32_t *g) {
  const int32_t k = l->lsg_pool, kk = k * k, channels = l->map_c;
  for (int32_t y = 0; y < l->map_h; ++y) {
    for (int32_t x = 0; x < l->map_w; ++x) {
      int32_t *out = g + (y * l->map_w + x) * channels;
      for (int32_t c = 0; c < channels; ++c) out[c] = 0;
      for (int32_t i = l->rlo[y]; i <= l->rhi[y]; ++i) {
        for (int32_t j = l->clo[x]; j <= l->chi[x]; ++j) {
          const int32_t *cell = cells + i * k + j;
          for (int32_t c = 0; c < channels; ++c) out[c] += cell[c * kk];
        }
      }
    }
  }
}

// Back through the block's max-pool: each window's signal (pooled_g) goes to its first maximum
// (row-major) in g, the layer's map.
void route_through_pool(const tess_spiking_t *layer, const tess_spiking_state_t *state, const uint8_t *pooled,
                        const int32_t *pooled_g, int32_t *g) {
  const tess_pool_t *p = layer->learning->block;
  for (int32_t n = 0; n < layer->n; ++n) g[n] = 0;
  for (int32_t oy = 0; oy < p->oh; ++oy) {
    for (int32_t ox = 0; ox < p->ow; ++ox) {
      for (int32_t c = 0; c < p->c; ++c) {
        const int32_t n = (oy * p->ow + ox) * p->c + c;
        const uint8_t peak = pooled[n];
        int32_t winner = -1;
        for (int32_t i = 0; i < p->ph && winner < 0; ++i) {
          const int32_t iy = oy * p->sh + i - p->pad_top;
          if (iy < 0 || iy >= p->h) continue;
          for (int32_t j = 0; j < p->pw; ++j) {
            const int32_t ix = ox * p->sw + j - p->pad_left;
            if (ix < 0 || ix >= p->w) continue;
            const int32_t at = (iy * p->w + ix) * p->c + c;
            if (state->o[at] == peak) {
              winner = at;
              break;
            }
          }
        }
        g[winner] += pooled_g[n];
      }
    }
  }
}

}  // namespace

extern "C" {

// g[cell] = sum_c B[c, cell] (softmax(B a) - y)[c] with a the (weighted) spike counts per
// cell; the 1/(n * L) of B and of pool^T sit in the LSG and learning-rate multipliers.
void tess_learning_signal(const tess_learning_t *l, int32_t classes, int32_t label, const tess_scratch_t *scratch) {
  int32_t *cells = scratch->cells;
  for (int32_t c = 0; c < classes; ++c) {
    const uint8_t *row = l->lsg_bits + c * l->lsg_row_bytes;
    int64_t sum = 0;
    for (int32_t k = 0; k < l->lsg_size; ++k) sum += lsg_sign(row, k) * cells[k];
    scratch->z[c] = tess_rescale(tess_sat32(sum), l->lsg_mult, l->lsg_shift);
  }
  tess_softmax_error(scratch->z, classes, label, scratch->err);
  for (int32_t k = 0; k < l->lsg_size; ++k) {
    int32_t g = 0;
    for (int32_t c = 0; c < classes; ++c) g += lsg_sign(l->lsg_bits + c * l->lsg_row_bytes, k) * scratch->err[c];
    cells[k] = g;
  }
}

void tess_learn_step(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                     const uint8_t *block_out, int32_t classes, int32_t label, const tess_scratch_t *scratch) {
  const tess_learning_t *l = layer->learning;
  int32_t *cells = scratch->cells;
  // g per neuron, in the e buffer (each e[n] replaces g[n] once read).
  int32_t *g = reinterpret_cast<int32_t *>(scratch->e);
  const bool conv = layer->kind == TESS_LAYER_CONV;
  if (conv) {
    count_cells(l, l->block != nullptr ? block_out : state->o, cells);
  } else {
    for (int32_t n = 0; n < layer->n; ++n) cells[n] = state->o[n];
  }
  tess_learning_signal(l, classes, label, scratch);
  if (conv) {
    const int32_t kk = l->lsg_pool * l->lsg_pool;
    for (int32_t k = 0; k < l->lsg_size; ++k) cells[k] *= l->cell_weight[k % kk];
    if (l->block != nullptr) {
      // The pooled map's g goes into acc (free during learning), then back through the pool.
      gather_cells(l, cells, scratch->acc);
      route_through_pool(layer, state, block_out, scratch->acc, g);
    } else {
      gather_cells(l, cells, g);
    }
  } else {
    for (int32_t n = 0; n < layer->n; ++n) g[n] = cells[n];
  }
  // e_pre = sat16(alpha_pre round(g psi / 2^15)), e_post = sat16(alpha_post round(g h / 2^15)),
  // packed as the int16 halves of one word for the correlation.
  for (int32_t n = 0; n < layer->n; ++n) {
    const int64_t gn = g[n];
    const int32_t psi = tess_psi_q15(state->u[n], layer->threshold, layer->psi_scale);
    const int32_t pre = tess_sat16((int64_t)l->alpha_pre * tess_round_shift(gn * psi, 15));
    const int32_t post = l->alpha_post != 0 ? tess_sat16((int64_t)l->alpha_post * tess_round_shift(gn * state->h[n], 15)) : 0;
    scratch->e[n] = (uint32_t)(uint16_t)pre | ((uint32_t)(uint16_t)post << 16);
  }
  if (!tess_fast_accumulate_dw(layer, state, x, scratch)) tess_accumulate_dw(layer, state, x, scratch);
}

}  // extern "C"
