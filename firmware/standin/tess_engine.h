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

// Per-layer profile and saved state, with the generated engine's API (tess_engine.h.j2).
#define TESS_NUM_LAYERS 2
#define TESS_PROFILE_OUTSIDE (-1)
typedef void (*tess_profile_hook_t)(int32_t layer, void *context);
void tess_set_profile_hook(tess_profile_hook_t hook, void *context);
const char *tess_layer_name(int32_t layer);
uint32_t tess_synaptic_events(int32_t layer, const int8_t *input);
#define TESS_STATE_FORMAT_VERSION 1u
#define TESS_STATE_BYTES (8u + 2u * 32u * TESS_NUM_CLASSES + 4u)  // "TESS", u32 version, int16 weights, CRC32
typedef enum {
    TESS_OK = 0, TESS_ERROR_NULL = 1, TESS_ERROR_BUFFER_TOO_SMALL = 2, TESS_ERROR_TRUNCATED = 3,
    TESS_ERROR_NOT_A_STATE = 4, TESS_ERROR_VERSION = 5, TESS_ERROR_OTHER_MODEL = 6, TESS_ERROR_CHECKSUM = 7
} tess_status_t;
uint32_t tess_state_size(void);
tess_status_t tess_save_state(uint8_t *buffer, uint32_t capacity, uint32_t *written);
tess_status_t tess_load_state(const uint8_t *buffer, uint32_t length);
void tess_clear_state(void);

#ifdef __cplusplus
}
#endif

#endif  // TESS_STANDIN_ENGINE_H_
