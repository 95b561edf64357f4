// Force-included when tess_engine.cc is compiled a second time with
// TESS_DENSE_REFERENCE: the copy's C API gets its own names, so the dense
// reference forward and the event-driven engine link into one firmware
// (everything else in the engine is file-local).
#ifndef TESS_FIRMWARE_DENSE_NAMES_H_
#define TESS_FIRMWARE_DENSE_NAMES_H_

#define tess_reset tess_dense_reset
#define tess_step tess_dense_step
#define tess_apply_update tess_dense_apply_update
#define tess_predict tess_dense_predict
#define tess_logits tess_dense_logits
#define tess_state_hash tess_dense_state_hash
#define tess_buffers tess_dense_buffers
#define tess_set_profile_hook tess_dense_set_profile_hook
#define tess_layer_name tess_dense_layer_name
#define tess_synaptic_events tess_dense_synaptic_events
#define tess_state_size tess_dense_state_size
#define tess_save_state tess_dense_save_state
#define tess_load_state tess_dense_load_state
#define tess_clear_state tess_dense_clear_state
#define tess_model tess_dense_model

#endif  // TESS_FIRMWARE_DENSE_NAMES_H_
