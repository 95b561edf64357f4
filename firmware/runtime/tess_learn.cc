// tess_learn.cc: the TESS update of one learning layer at one step: the local
// learning signal (LSG), the eligibility terms e_pre / e_post and the
// accumulation of dW (applied once per sample by tess_update_spiking). On
// Helium the learning signal and the eligibility run four cells or neurons a
// vector (the MVE blocks below, checked against the reference by the kernel check).
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_runtime.h"
#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>
#endif

namespace {

// The bits of B's row byte `byte` that are columns 1..n-1 (column 0 is zero, bits past n unused).
inline uint32_t column_mask(int32_t byte, int32_t n) {
  const int32_t left = n - byte * 8;
  return (left >= 8 ? 0xFFu : (1u << left) - 1u) & (byte == 0 ? 0xFEu : 0xFFu);
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

// sat16(alpha r) without int64 overflow: past 2^16 in magnitude r saturates any alpha != 0 the
// same way as 2^16 does.
inline int32_t e_term(int32_t alpha, int64_t r) {
  const int64_t bounded = r > (1 << 16) ? (1 << 16) : (r < -(1 << 16) ? -(1 << 16) : r);
  return tess_sat16((int64_t)alpha * bounded);
}

// Back through the block's max-pool: each window's signal (pooled_g) goes to its first maximum
// (row-major) in g, the layer's map. The window's part inside the map is found once for all
// its channels.
void route_through_pool(const tess_spiking_t *layer, const tess_spiking_state_t *state, const uint8_t *pooled,
                        const int32_t *pooled_g, int32_t *g) {
  const tess_pool_t *p = layer->learning->block;
  const int32_t channels = p->c, row_stride = p->w * p->c;
  for (int32_t n = 0; n < layer->n; ++n) g[n] = 0;
  for (int32_t oy = 0; oy < p->oh; ++oy) {
    const int32_t top = oy * p->sh - p->pad_top;
    const int32_t y0 = top < 0 ? 0 : top, y1 = top + p->ph > p->h ? p->h : top + p->ph;
    for (int32_t ox = 0; ox < p->ow; ++ox) {
      const int32_t left = ox * p->sw - p->pad_left;
      const int32_t x0 = left < 0 ? 0 : left, x1 = left + p->pw > p->w ? p->w : left + p->pw;
      const int32_t corner = y0 * row_stride + x0 * channels, n0 = (oy * p->ow + ox) * channels;
      for (int32_t c = 0; c < channels; ++c) {
        const uint8_t peak = pooled[n0 + c];
        int32_t winner = -1;
        for (int32_t at = corner + c, y = y0; y < y1 && winner < 0; ++y, at += row_stride) {
          for (int32_t x = 0; x < x1 - x0; ++x) {
            if (state->o[at + x * channels] == peak) {
              winner = at + x * channels;
              break;
            }
          }
        }
        g[winner] += pooled_g[n0 + c];
      }
    }
  }
}

#if defined(TESS_FAST)
// sat16(alpha round(g v / 2^15)) in 32-bit steps where 0 < |alpha| < 2^15: one SMLAL gives
// g v + 2^14; inside int32 its shift is at most 2^16 in magnitude, so alpha times it fits int32
// (SSAT); outside, |round(g v / 2^15)| >= 2^16 and the result saturates with the product's sign.
inline int32_t e_half(int32_t g, int32_t v, int32_t alpha) {
  const int64_t p = (int64_t)g * v + (1 << 14);
  const int32_t lo = (int32_t)p, hi = (int32_t)(p >> 32);
  if (hi != (lo >> 31)) return (hi < 0) != (alpha < 0) ? INT16_MIN : INT16_MAX;
  return tess_ssat16(alpha * (lo >> 15));
}
#endif

#if defined(TESS_MVE)
// e_half for four neurons, -2^15 <= v < 2^15: VQRDMULH of g by v 2^16 is round(g v / 2^15) (it
// saturates only for g = v 2^16 = -2^31, where the clamp below gives the same answer); clamped to +-2^16,
// alpha times it fits int32 and saturates to int16 exactly when the exact product does.
inline int32x4_t e_half_mve(int32x4_t g, int32x4_t v, int32_t alpha) {
  const int32x4_t rounded = vqrdmulhq_s32(g, vshlq_n_s32(v, 16));
  return vmulq_n_s32(vmaxq_s32(vminq_s32(rounded, vdupq_n_s32(1 << 16)), vdupq_n_s32(-(1 << 16))), alpha);
}

// tess_fast_eligibility four neurons a vector: e_pre and e_post saturate into the bottom and
// top int16 halves of each neuron's word (VQMOVNB / VQMOVNT), so one store writes the pairs.
void eligibility_mve(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *g, uint32_t *e) {
  const tess_learning_t *l = layer->learning;
  const int32_t pre_alpha = l->alpha_pre, post_alpha = l->alpha_post, scale = layer->psi_scale;
  const int32x4_t threshold = vdupq_n_s32(layer->threshold);
  for (int32_t n = 0; n < layer->n; n += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(layer->n - n));
    const int32x4_t gn = vldrwq_z_s32(g + n, p);
    const int32x4_t psi = tess_mve_psi(vldrhq_z_s32(state->u + n, p), threshold, scale);
    int16x8_t pair = vqmovnbq_s32(vdupq_n_s16(0), e_half_mve(gn, psi, pre_alpha));
    if (post_alpha != 0) pair = vqmovntq_s32(pair, e_half_mve(gn, vldrhq_z_s32(state->h + n, p), post_alpha));
    vstrwq_p_u32(e + n, vreinterpretq_u32_s16(pair), p);  // after g[n..n+3] is read: e may be g's buffer
  }
}

// The predicate of the four int32 lanes j whose bit j is set in a nibble of B.
constexpr uint16_t lanes_of(uint32_t nibble) {
  return (uint16_t)(((nibble & 1u) ? 0x000Fu : 0u) | ((nibble & 2u) ? 0x00F0u : 0u) | ((nibble & 4u) ? 0x0F00u : 0u) |
                    ((nibble & 8u) ? 0xF000u : 0u));
}
constexpr uint16_t kLanes[16] = {lanes_of(0),  lanes_of(1),  lanes_of(2),  lanes_of(3), lanes_of(4),  lanes_of(5),
                                 lanes_of(6),  lanes_of(7),  lanes_of(8),  lanes_of(9), lanes_of(10), lanes_of(11),
                                 lanes_of(12), lanes_of(13), lanes_of(14), lanes_of(15)};

// tess_learning_signal's two passes over B, eight cells (one byte of each row) at a time, as two
// vectors whose lanes are predicated by the byte's nibbles (column 0 excluded): the int64 sums
// over the set bits by VADDLVA (exact, as the reference's), and each cell's -sum err + 2 sum
// over its set bits of err[c] by predicated adds (int32, as the reference's). n % 8 == 0.
void learning_signal_mve(const tess_learning_t *l, int32_t classes, int32_t label, const tess_scratch_t *scratch) {
  int32_t *cells = scratch->cells;
  const int32_t n = l->lsg_size, bytes = n / 8;
  int64_t total = 0;
  for (int32_t k = 0; k < n; k += 4) {
    total = vaddlvaq_p_s32(total, vldrwq_s32(cells + k), k == 0 ? (mve_pred16_t)0xFFF0u : (mve_pred16_t)0xFFFFu);
  }
  for (int32_t c = 0; c < classes; ++c) {
    const uint8_t *row = l->lsg_bits + c * l->lsg_row_bytes;
    int64_t set = 0;
    for (int32_t byte = 0; byte < bytes; ++byte) {
      const uint32_t bits = row[byte] & (byte == 0 ? 0xFEu : 0xFFu);
      set = vaddlvaq_p_s32(set, vldrwq_s32(cells + 8 * byte), kLanes[bits & 0xFu]);
      set = vaddlvaq_p_s32(set, vldrwq_s32(cells + 8 * byte + 4), kLanes[bits >> 4]);
    }
    scratch->z[c] = tess_rescale(tess_sat32(2 * set - total), l->lsg_mult, l->lsg_shift);
  }
  tess_softmax_error(scratch->z, classes, label, scratch->err);
  int32_t err_total = 0;
  for (int32_t c = 0; c < classes; ++c) err_total += scratch->err[c];
  for (int32_t byte = 0; byte < bytes; ++byte) {
    int32x4_t low = vdupq_n_s32(-err_total), high = low;
    const uint8_t *column = l->lsg_bits + byte;
    for (int32_t c = 0; c < classes; ++c, column += l->lsg_row_bytes) {
      const uint32_t bits = *column, twice = 2 * (uint32_t)scratch->err[c];
      low = vaddq_m_n_s32(low, low, (int32_t)twice, kLanes[bits & 0xFu]);
      high = vaddq_m_n_s32(high, high, (int32_t)twice, kLanes[bits >> 4]);
    }
    vstrwq_s32(cells + 8 * byte, low);
    vstrwq_s32(cells + 8 * byte + 4, high);
  }
  cells[0] = 0;
}
#endif

}  // namespace

extern "C" {

// tess_eligibility with e_half and psi in int32, exact where the layer's multipliers allow it
// (0 <= psi_scale < 2^20 keeps rest psi_scale + 2^10 inside int32); 0: not taken.
int32_t tess_fast_eligibility(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *g,
                              uint32_t *e) {
#if defined(TESS_FAST)
  const tess_learning_t *l = layer->learning;
  const int32_t pre_alpha = l->alpha_pre, post_alpha = l->alpha_post, scale = layer->psi_scale;
  const auto small = [](int32_t a) { return a != 0 && a > -(1 << 15) && a < (1 << 15); };
  if (!small(pre_alpha) || !(post_alpha == 0 || small(post_alpha)) || scale < 0 || scale >= (1 << 20)) return 0;
#if defined(TESS_MVE)
  if (scale < (1 << 15)) {  // psi <= scale: psi 2^16 fits int32 (exports scale psi far below)
    eligibility_mve(layer, state, g, e);
    return 1;
  }
#endif
  const int32_t threshold = layer->threshold;
  for (int32_t n = 0; n < layer->n; ++n) {
    const int32_t gn = g[n];
    if (gn == 0) {
      e[n] = 0;
      continue;
    }
    int32_t distance = state->u[n] - threshold;
    if (distance < 0) distance = -distance;
    const int32_t rest = (1 << TESS_U_FRAC) - distance;
    const int32_t psi = rest <= 0 ? 0 : (rest * scale + (1 << (TESS_U_FRAC - 1))) >> TESS_U_FRAC;
    const int32_t pre = e_half(gn, psi, pre_alpha);
    const int32_t post = post_alpha != 0 ? e_half(gn, state->h[n], post_alpha) : 0;
    e[n] = (uint32_t)(uint16_t)pre | ((uint32_t)(uint16_t)post << 16);
  }
  return 1;
#else  // no DSP path: tess_eligibility computes e
  (void)layer, (void)state, (void)g, (void)e;
  return 0;
#endif
}

// e_pre = sat16(alpha_pre round(g psi / 2^15)), e_post = sat16(alpha_post round(g h / 2^15)) per
// neuron, packed as the int16 halves of one word for the correlation (e may be g's buffer).

// g[cell] = sum_c B[c, cell] (softmax(B a) - y)[c] with a the (weighted) spike counts per
// cell; the 1/(n * L) of B and of pool^T sit in the LSG and learning-rate multipliers.
void tess_learning_signal(const tess_learning_t *l, int32_t classes, int32_t label, const tess_scratch_t *scratch) {
  // B's signs are +1 (bit set) or -1 outside column 0 (0): each sum is twice the sum over the set
  // bits less the sum over all of columns 1..n-1, so only the set bits are visited.
  int32_t *cells = scratch->cells;
  const int32_t n = l->lsg_size;
  int64_t total = 0;
  for (int32_t k = 1; k < n; ++k) total += cells[k];
  for (int32_t c = 0; c < classes; ++c) {
    const uint8_t *row = l->lsg_bits + c * l->lsg_row_bytes;
    int64_t set = 0;
    for (int32_t byte = 0; byte < l->lsg_row_bytes; ++byte) {
      for (uint32_t bits = row[byte] & column_mask(byte, n); bits != 0; bits &= bits - 1) {
        set += cells[byte * 8 + __builtin_ctz(bits)];
      }
    }
    scratch->z[c] = tess_rescale(tess_sat32(2 * set - total), l->lsg_mult, l->lsg_shift);
  }
  tess_softmax_error(scratch->z, classes, label, scratch->err);
  int32_t err_total = 0;
  for (int32_t c = 0; c < classes; ++c) err_total += scratch->err[c];
  cells[0] = 0;
  for (int32_t k = 1; k < n; ++k) cells[k] = -err_total;
  for (int32_t c = 0; c < classes; ++c) {
    const uint8_t *row = l->lsg_bits + c * l->lsg_row_bytes;
    const int32_t twice = 2 * scratch->err[c];
    for (int32_t byte = 0; byte < l->lsg_row_bytes; ++byte) {
      for (uint32_t bits = row[byte] & column_mask(byte, n); bits != 0; bits &= bits - 1) {
        cells[byte * 8 + __builtin_ctz(bits)] += twice;
      }
    }
  }
}

int32_t tess_fast_learning_signal(const tess_learning_t *l, int32_t classes, int32_t label,
                                  const tess_scratch_t *scratch) {
#if defined(TESS_MVE)
  if (l->lsg_size % 8 != 0) return 0;
  learning_signal_mve(l, classes, label, scratch);
  return 1;
#else  // tess_learning_signal visits only B's set bits: no faster scalar way
  (void)l, (void)classes, (void)label, (void)scratch;
  return 0;
#endif
}

void tess_eligibility(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *g, uint32_t *e) {
  const tess_learning_t *l = layer->learning;
  for (int32_t n = 0; n < layer->n; ++n) {
    const int64_t gn = g[n];
    if (gn == 0) {  // e = 0 (through a max-pool most neurons win no window)
      e[n] = 0;
      continue;
    }
    const int32_t psi = tess_psi_q15(state->u[n], layer->threshold, layer->psi_scale);
    const int32_t pre = e_term(l->alpha_pre, tess_round_shift(gn * psi, 15));
    const int32_t post = l->alpha_post != 0 ? e_term(l->alpha_post, tess_round_shift(gn * state->h[n], 15)) : 0;
    e[n] = (uint32_t)(uint16_t)pre | ((uint32_t)(uint16_t)post << 16);
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
  if (!tess_fast_learning_signal(l, classes, label, scratch)) tess_learning_signal(l, classes, label, scratch);
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
  if (!tess_fast_eligibility(layer, state, g, scratch->e)) tess_eligibility(layer, state, g, scratch->e);
  if (!tess_fast_accumulate_dw(layer, state, x, scratch)) tess_accumulate_dw(layer, state, x, scratch);
}

}  // extern "C"
