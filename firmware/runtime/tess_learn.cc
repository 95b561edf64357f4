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

// Where position pos of the LSG map lies: its row and column cells and its channel's first cell.
struct CellSpan {
  int32_t row_lo, row_hi, col_lo, col_hi, base;
};

inline CellSpan cell_span(const tess_learning_t *l, int32_t pos) {
  const int32_t y = pos / (l->map_w * l->map_c), x = (pos / l->map_c) % l->map_w;
  const int32_t k = l->lsg_pool;
  return {l->rlo[y], l->rhi[y], l->clo[x], l->chi[x], (pos % l->map_c) * k * k};
}

// Spike counts per LSG cell of a conv layer's map (adaptive windows may overlap), times L / area.
void count_cells(const tess_learning_t *l, const uint8_t *map, int32_t *cells) {
  const int32_t k = l->lsg_pool, kk = k * k, size = l->map_h * l->map_w * l->map_c;
  for (int32_t i = 0; i < l->lsg_size; ++i) cells[i] = 0;
  for (int32_t pos = 0; pos < size; ++pos) {
    if (!map[pos]) continue;
    const CellSpan s = cell_span(l, pos);
    for (int32_t i = s.row_lo; i <= s.row_hi; ++i) {
      for (int32_t j = s.col_lo; j <= s.col_hi; ++j) cells[s.base + i * k + j] += 1;
    }
  }
  for (int32_t i = 0; i < l->lsg_size; ++i) cells[i] *= l->cell_weight[i % kk];
}

// The sum of the cell signals over the cells position pos lies in (pool^T of the LSG).
int64_t gather_cells(const tess_learning_t *l, const int32_t *cells, int32_t pos) {
  const CellSpan s = cell_span(l, pos);
  int64_t sum = 0;
  for (int32_t i = s.row_lo; i <= s.row_hi; ++i) {
    for (int32_t j = s.col_lo; j <= s.col_hi; ++j) sum += cells[s.base + i * l->lsg_pool + j];
  }
  return sum;
}

// Back through the block's max-pool: each window's signal goes to its first maximum (row-major).
void route_through_pool(const tess_spiking_t *layer, const tess_spiking_state_t *state, const uint8_t *pooled,
                        const int32_t *cells, int32_t *e_pre) {
  const tess_pool_t *p = layer->learning->block;
  for (int32_t n = 0; n < layer->n; ++n) e_pre[n] = 0;
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
        e_pre[winner] += (int32_t)gather_cells(layer->learning, cells, n);
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
  }
  if (l->block != nullptr) route_through_pool(layer, state, block_out, cells, scratch->e_pre);
  for (int32_t n = 0; n < layer->n; ++n) {
    const int64_t g = l->block != nullptr ? scratch->e_pre[n] : (conv ? gather_cells(l, cells, n) : cells[n]);
    const int32_t psi = tess_psi_q15(state->u[n], layer->threshold, layer->psi_scale);
    if (l->alpha_post != 0) scratch->e_post[n] = l->alpha_post * (int32_t)tess_round_shift(g * state->h[n], 15);
    scratch->e_pre[n] = l->alpha_pre * (int32_t)tess_round_shift(g * psi, 15);
  }
  if (!tess_fast_accumulate_dw(layer, state, x, scratch)) tess_accumulate_dw(layer, state, x, scratch);
}

}  // extern "C"
