/*
 * tess_kernels.h: the fixed kernels of the TESS engine and their parameter structs.
 *
 * The generated tess_engine.cc holds only tables (weights, multipliers, LSG
 * bits), one const descriptor per layer and the call list; every loop lives
 * here. A layer's descriptor (const, flash) says what the layer is; its state
 * struct points at what changes (membranes, spikes, traces, accumulated dW and,
 * for a learning layer, its weights), so one image can hold several models.
 *
 * Each kernel has a reference implementation; where the core has the Arm DSP
 * extension, bit-exact fast paths replace the hot loops (tess_simd.h,
 * tess_fast.h), unless TESS_KERNELS_REFERENCE is defined. The integer semantics are those of
 * tess_keras/export/golden.py.
 *
 * Spikes are uint8 0/1; kernels read every input through `const int8_t *`
 * (the model input is int8, spikes are 0/1 in either type).
 */
#ifndef TESS_KERNELS_H
#define TESS_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TESS_LAYER_DENSE = 0, TESS_LAYER_CONV = 1 };

/* Convolution geometry, HWC maps, weights [kh][kw][ci][co]. */
typedef struct {
  int32_t h, w, ci;        /* input map */
  int32_t oh, ow, co;      /* output map */
  int32_t k, stride;       /* square kernel, equal strides */
  int32_t pad_top, pad_left;
} tess_conv_shape_t;

/* Max pool over binary spikes, HWC. */
typedef struct {
  int32_t h, w, c;          /* input map */
  int32_t oh, ow;           /* output map (c channels) */
  int32_t ph, pw, sh, sw;   /* window, strides */
  int32_t pad_top, pad_left;
} tess_pool_t;

/* What a learning layer needs beyond its forward step. */
typedef struct {
  int32_t lambda_pre, lambda_post;    /* trace decays, Q15 */
  int32_t alpha_pre, alpha_post;      /* TESS factors (alpha_post 0: no post trace) */
  int32_t trace_frac;                 /* fraction bits of the pre trace q */
  int32_t grad_shift;                 /* dW = sat16(dW + sat16(round(sum / 2^grad_shift))), >= 1 */
  /* Learning signal: B as sign bits [class][row_bytes], its size n and multiplier. */
  const uint8_t *lsg_bits;
  int32_t lsg_row_bytes, lsg_size, lsg_mult, lsg_shift;
  /* Conv LSG cells: the map the cells pool (own spikes, or the block's pool output),
   * k x k cells per channel, the first/last cell row (column) of each map row
   * (column) and each cell's weight L / area. Unused (NULL) for dense layers. */
  int32_t lsg_pool, map_h, map_w, map_c;
  const uint8_t *rlo, *rhi, *clo, *chi;
  const int32_t *cell_weight;
  const tess_pool_t *block;           /* LSG on this pool's output (NULL: own spikes) */
  const int32_t *update_mult;         /* per output channel */
  const int8_t *update_shift;
} tess_learning_t;

/* A LIF layer (conv or dense) with soft reset. */
typedef struct {
  int32_t kind;                       /* TESS_LAYER_DENSE or TESS_LAYER_CONV */
  int32_t analog;                     /* 1: int8 input values; 0: binary spikes */
  int32_t n, nin, co;                 /* neurons, inputs, output channels */
  tess_conv_shape_t conv;             /* conv only */
  const int8_t *weights;              /* frozen weights (learning layers: their state's) */
  int32_t weight_count;               /* k*k*ci*co (conv), nin*co (dense) */
  const int32_t *current_mult;        /* per output channel */
  const int8_t *current_shift;
  int32_t threshold, reset_amount, gamma, psi_scale;
  const tess_learning_t *learning;    /* NULL: frozen */
} tess_spiking_t;

typedef struct {
  int16_t *u;   /* membranes [n], Q4.11 */
  uint8_t *o;   /* spikes [n] */
  int16_t *q;   /* pre trace [nin] (learning) */
  int16_t *h;   /* post trace [n] (alpha_post != 0) */
  int16_t *g;   /* accumulated dW, like the weights (learning), saturating int16 */
  int8_t *w;    /* the weights, in RAM (learning) */
} tess_spiking_state_t;

/* Linear readout: logits = b + x W, W [nin][classes]. */
typedef struct {
  int32_t nin, classes;
  const int8_t *weights;              /* frozen (learning: the state's) */
  const int32_t *bias;
  int32_t learn, logit_mult, logit_shift, update_mult, update_shift;
} tess_readout_t;

typedef struct {
  int8_t *w;     /* learning only */
  int32_t *b;
  int32_t *g, *gb;
  int32_t *step_logits, *logit_sum;
} tess_readout_state_t;

/* Scratch shared by the layers of one model (sizes: the largest layer's). */
typedef struct {
  int32_t *acc;    /* [max neurons, classes] */
  uint32_t *e;     /* [max learning neurons]: (e_pre, e_post) as int16 halves (low, high) */
  int32_t *cells;  /* [max LSG size] */
  int64_t *gsum;   /* [max learning channels] */
  int32_t *z;      /* [classes] */
  int32_t *err;    /* [classes] */
  uint32_t *mask;  /* spike bit masks of the largest spike input: h * w * ceil(ci / 32) words */
  int16_t *packed; /* the int8-input layer's weights as int16: co * (k * k * ci + 1) (NULL: none) */
} tess_scratch_t;

/* ---- kernels ---- */

/* Synaptic currents acc[n] = sum over inputs of x * w (event-driven: zero
 * inputs skipped, binary spikes add weight rows; dense: every synapse). */
void tess_spiking_currents(const tess_spiking_t *layer, const int8_t *weights, const int8_t *x, int32_t *acc,
                           int32_t dense);
/* Pre and post traces of a learning layer, before the membranes move (t: the step). */
void tess_spiking_traces(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t t);
/* Soft-reset LIF: u = gamma (u - r o) + rescale(acc); o = u >= v_th. */
void tess_spiking_fire(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *acc);
/* One forward step: currents, traces (when learning), membranes and spikes. */
void tess_spiking_step(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t learn,
                       int32_t t, const tess_scratch_t *scratch, int32_t dense);

/* OR over each window of binary spikes. */
void tess_pool_step(const tess_pool_t *pool, const uint8_t *x, uint8_t *out);

/* The TESS update of one learning layer at this step: learning signal, e_pre /
 * e_post, and dW accumulation. block_out: the pool output the LSG reads
 * (learning->block != NULL), else NULL. */
void tess_learn_step(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                     const uint8_t *block_out, int32_t classes, int32_t label, const tess_scratch_t *scratch);
/* The learning-signal part: scratch->cells holds the spike counts per LSG cell
 * on entry and g per cell on return. */
void tess_learning_signal(const tess_learning_t *learning, int32_t classes, int32_t label,
                          const tess_scratch_t *scratch);
/* e per neuron from its learning signal g[n]: the int16 pair (e_pre, e_post) =
 * (sat16(alpha_pre round(g psi(u) / 2^15)), sat16(alpha_post round(g h / 2^15))), low half e_pre. */
void tess_eligibility(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *g, uint32_t *e);
/* dW = sat16(dW + sat16(round((e_pre (x) q + e_post (x) x 2^frac) / 2^grad_shift))), the
 * sum exact, from the int16 pairs of scratch->e. */
void tess_accumulate_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                        const tess_scratch_t *scratch);

/* The readout's weight sums acc[c] = sum_i x_i W[i, c] (event-driven, or dense: every synapse). */
void tess_readout_currents(const tess_readout_t *readout, const int8_t *weights, const uint8_t *x, int32_t *acc,
                           int32_t dense);
/* Readout logits (and, when learning, the cross-entropy dW on detached inputs). */
void tess_readout_step(const tess_readout_t *readout, const tess_readout_state_t *state, const uint8_t *x, int32_t learn,
                       int32_t label, const tess_scratch_t *scratch, int32_t dense);

/* w[i] = clamp(w[i] - rescale(g[i]) with stochastic rounding, +-127), g[i] = 0, for
 * i < count; channel i % channels (mult, shift); weight i rounds with the 16-bit half
 * i % 2 (low, high) of generator draw counter + i / 2: one draw serves two weights. */
void tess_sgd_update(int8_t *w, int16_t *g, int32_t count, int32_t channels, const int32_t *mult, const int8_t *shift,
                     uint32_t seed, uint32_t counter);
/* The same for int32 accumulators (the readout's). */
void tess_sgd_update32(int8_t *w, int32_t *g, int32_t count, int32_t channels, const int32_t *mult,
                       const int8_t *shift, uint32_t seed, uint32_t counter);
/* Draws one weight update of count weights takes: one per two weights. */
static inline uint32_t tess_update_draws(int32_t count) { return (uint32_t)(count + 1) / 2u; }
/* One SGD step with stochastic rounding from the accumulated updates, which are
 * cleared; counter: the generator's, advanced by the draws taken (tess_update_draws;
 * the readout bias: one each). */
void tess_update_spiking(const tess_spiking_t *layer, const tess_spiking_state_t *state, uint32_t seed,
                         uint32_t *counter);
void tess_update_readout(const tess_readout_t *readout, const tess_readout_state_t *state, uint32_t seed,
                         uint32_t *counter);

/* Synaptic events of one step of a layer on input x: non-zero inputs times the synapses each reaches. */
uint32_t tess_spiking_events(const tess_spiking_t *layer, const int8_t *x);

#ifdef __cplusplus
}
#endif

#endif /* TESS_KERNELS_H */
