// A tiny hand-written engine with the C API `tess export` generates: 16
// inputs -> 32 LIF neurons (fixed weights) -> 4-class readout that learns on
// the device with an integer delta rule. The firmware tests build every board
// against it in seconds, without training and exporting a network first.
#ifndef TESS_STANDIN_ENGINE_H_
#define TESS_STANDIN_ENGINE_H_

#include <stdint.h>

#define TESS_INPUT_SIZE 16
#define TESS_NUM_CLASSES 4
#define TESS_TIME_STEPS 4
// Compiled with TESS_DENSE_REFERENCE, the readout multiplies every synapse
// (zeros included) instead of adding the weights of active inputs.
#define TESS_HAS_DENSE_REFERENCE 1

#ifdef __cplusplus
extern "C" {
#endif

void tess_reset(void);                                  // zero membranes and logits before a sample
void tess_step(const int8_t *input, int32_t label);     // one time step; label >= 0 also learns
void tess_apply_update(void);                           // add the accumulated update to the weights
int32_t tess_predict(void);                             // argmax of the logits summed over the steps
const int32_t *tess_logits(void);                       // those summed logits
uint32_t tess_state_hash(void);                         // FNV-1a over the learnable weights

// Named internal buffers, as in the generated engine ("hidden.o": spikes).
typedef struct {
    const char *name;
    const void *data;
    uint32_t count;      // elements
    uint8_t elem_bytes;  // 1, 2 or 4
} tess_buffer_t;
uint32_t tess_buffers(const tess_buffer_t **table);

#ifdef __cplusplus
}
#endif

#endif  // TESS_STANDIN_ENGINE_H_
