/*
 * tess_fast.h: the kernels' fast paths (DSP extension, tess_simd.h), called
 * by the reference kernels where the build has one. Each returns 1 when it
 * did the work and 0 in a reference build (TESS_KERNELS_REFERENCE, or a core
 * without the DSP extension), where the caller runs its reference loop.
 * Internal to the runtime.
 */
#ifndef TESS_FAST_H
#define TESS_FAST_H

#include <stdint.h>

#include "tess_kernels.h"
#include "tess_runtime.h"

/*
 * tess_rescale (round(x * mult / 2^shift), saturated) without 64-bit shifts:
 * shift >= 33 needs only the product's high word (the low word cannot move the
 * floor, and |high| <= 2^30 cannot saturate); 1 <= shift <= 32 adds the
 * rounding to the low word with carry and joins the words.
 */
static inline int32_t tess_rescale_fast(int32_t x, int32_t mult, int32_t shift) {
  const int64_t product = (int64_t)x * mult;
  int32_t hi = (int32_t)(product >> 32);
  if (shift >= 33) return (hi + (1 << (shift - 33))) >> (shift - 32);
  if (shift < 1) return tess_rescale(x, mult, shift);
  const uint32_t lo = (uint32_t)product, rounded = lo + (1u << (shift - 1));
  hi += rounded < lo ? 1 : 0;
  const int32_t top = hi >> (shift - 1);
  if (top != 0 && top != -1) return hi < 0 ? INT32_MIN : INT32_MAX;
  if (shift == 32) return hi;
  return (int32_t)(((uint32_t)hi << (32 - shift)) | (rounded >> shift));
}

#ifdef __cplusplus
extern "C" {
#endif

/* acc[n] = the layer's synaptic currents (tess_spiking_currents); mask: scratch
 * for a spike input's bit masks; packed: scratch for an int8-input layer's
 * weights as int16 (co * (taps + 1) values; NULL: not used). */
int32_t tess_fast_currents(const tess_spiking_t *layer, const int8_t *weights, const int8_t *x, int32_t *acc,
                           uint32_t *mask, int16_t *packed);
/* The LIF update of tess_spiking_fire. */
int32_t tess_fast_fire(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *acc);
/* The pre and post traces of tess_spiking_traces. */
int32_t tess_fast_traces(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x, int32_t t);
/* acc[c] = sum of the weight rows of the active inputs (the readout's logits without bias). */
int32_t tess_fast_readout(const tess_readout_t *readout, const int8_t *weights, const uint8_t *x, int32_t *acc,
                          uint32_t *mask);
/* Helium builds (TESS_MVE): the currents of a binary-spike input on geometry s (a dense
 * layer or the readout: a 1x1 map with nin channels); mask: as above. 0 without MVE. */
int32_t tess_mve_spike_currents(const tess_conv_shape_t *s, const int8_t *weights, const uint8_t *x, uint32_t *mask,
                                int32_t *acc);
/* The same for an int8 input (no scratch). */
int32_t tess_mve_value_currents(const tess_conv_shape_t *s, const int8_t *weights, const int8_t *x, int32_t *acc);

/* Helium builds: tess_learning_signal four cells a vector. 0 without MVE. */
int32_t tess_fast_learning_signal(const tess_learning_t *l, int32_t classes, int32_t label,
                                  const tess_scratch_t *scratch);
/* tess_eligibility in 32-bit arithmetic where the layer's alphas and psi scale keep it exact. */
int32_t tess_fast_eligibility(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int32_t *g,
                              uint32_t *e);
/* The dW step of a conv layer (tess_accumulate_dw). */
int32_t tess_fast_accumulate_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                                const tess_scratch_t *scratch);
/* Helium builds (TESS_MVE, tess_dw_mve.cc; defined there only): the same for stride-1 conv
 * layers whose sums this step fit int32, four positions a VMLADAVA; 0: declined (nothing done).
 * It uses scratch acc, e (overwritten: read by then) and gsum as its buffers. */
int32_t tess_mve_accumulate_dw(const tess_spiking_t *layer, const tess_spiking_state_t *state, const int8_t *x,
                               const tess_scratch_t *scratch);
/* The SGD step of count weights (channel i % channels: mult, shift) from their
 * accumulators, cleared; weight i rounds with half i % 2 of draw counter + i / 2
 * (tess_sgd_update); int16 accumulators (spiking layers) and int32 (the readout's). */
int32_t tess_fast_update(int8_t *w, int16_t *g, int32_t count, int32_t channels, const int32_t *mult,
                         const int8_t *shift, uint32_t seed, uint32_t counter);
int32_t tess_fast_update32(int8_t *w, int32_t *g, int32_t count, int32_t channels, const int32_t *mult,
                           const int8_t *shift, uint32_t seed, uint32_t counter);
/* Helium builds (TESS_MVE, tess_update_mve.cc; defined there only): the same steps eight
 * weights a vector, 1 where done, 0 where the layer is declined (nothing done). */
int32_t tess_mve_update(int8_t *w, int16_t *g, int32_t count, int32_t channels, const int32_t *mult,
                        const int8_t *shift, uint32_t seed, uint32_t counter);
int32_t tess_mve_update32(int8_t *w, int32_t *g, int32_t count, int32_t channels, const int32_t *mult,
                          const int8_t *shift, uint32_t seed, uint32_t counter);

#ifdef __cplusplus
}
#endif

#endif /* TESS_FAST_H */
