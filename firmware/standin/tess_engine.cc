#include "tess_engine.h"

namespace {

constexpr int kHidden = 32;
constexpr int32_t kThreshold = 96;  // membrane units: one input unit = 1
constexpr int32_t kLearnShift = 2;

int8_t hidden_weights[kHidden][TESS_INPUT_SIZE];
int16_t readout_weights[TESS_NUM_CLASSES][kHidden];
int32_t readout_update[TESS_NUM_CLASSES][kHidden];
int32_t membrane[kHidden];
uint8_t hidden_spikes[kHidden];
int32_t logits_sum[TESS_NUM_CLASSES];
bool initialised = false;
tess_profile_hook_t profile_hook = nullptr;
void *profile_context = nullptr;

void mark(int32_t layer) {
    if (profile_hook != nullptr) {
        profile_hook(layer, profile_context);
    }
}

uint32_t crc32(const uint8_t *data, uint32_t count) {
    uint32_t crc = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < count; ++i) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; ++bit) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

// Fixed pseudo-random hidden weights in [-8, 7] (xorshift32, seed 1).
void initialise(void) {
    uint32_t state = 1u;
    for (int i = 0; i < kHidden; ++i) {
        for (int j = 0; j < TESS_INPUT_SIZE; ++j) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            hidden_weights[i][j] = static_cast<int8_t>(static_cast<int32_t>(state >> 28) - 8);
        }
    }
    initialised = true;
}

int16_t saturate16(int32_t value) {
    return static_cast<int16_t>(value > 32767 ? 32767 : (value < -32768 ? -32768 : value));
}

}  // namespace

void tess_reset(void) {
    if (!initialised) {
        initialise();
    }
    for (int i = 0; i < kHidden; ++i) {
        membrane[i] = 0;
    }
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        logits_sum[c] = 0;
    }
}

void tess_step(const int8_t *input, int32_t label) {
    uint8_t *spikes = hidden_spikes;
    mark(0);
    for (int i = 0; i < kHidden; ++i) {
        int32_t current = 0;
        for (int j = 0; j < TESS_INPUT_SIZE; ++j) {
            current += hidden_weights[i][j] * input[j];
        }
        membrane[i] = membrane[i] / 2 + current / 8;
        spikes[i] = membrane[i] >= kThreshold ? 1u : 0u;
        if (spikes[i] != 0u) {
            membrane[i] -= kThreshold;
        }
    }
    mark(1);
    int32_t step_logits[TESS_NUM_CLASSES];
    int32_t best = 0;
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        int32_t sum = 0;
        for (int i = 0; i < kHidden; ++i) {
#if defined(TESS_DENSE_REFERENCE)
            sum += readout_weights[c][i] * spikes[i];
#else
            if (spikes[i] != 0u) {  // binary spikes: add, never multiply
                sum += readout_weights[c][i];
            }
#endif
        }
        step_logits[c] = sum;
        logits_sum[c] += sum;
        if (sum > step_logits[best]) {
            best = c;
        }
    }
    if (label >= 0 && label < TESS_NUM_CLASSES && best != label) {
        for (int i = 0; i < kHidden; ++i) {
            if (spikes[i] != 0u) {
                readout_update[label][i] += 1 << kLearnShift;
                readout_update[best][i] -= 1 << kLearnShift;
            }
        }
    }
    mark(TESS_PROFILE_OUTSIDE);
}

void tess_apply_update(void) {
    mark(1);
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        for (int i = 0; i < kHidden; ++i) {
            readout_weights[c][i] = saturate16(readout_weights[c][i] + readout_update[c][i]);
            readout_update[c][i] = 0;
        }
    }
    mark(TESS_PROFILE_OUTSIDE);
}

int32_t tess_predict(void) {
    int32_t best = 0;
    for (int c = 1; c < TESS_NUM_CLASSES; ++c) {
        if (logits_sum[c] > logits_sum[best]) {
            best = c;
        }
    }
    return best;
}

const int32_t *tess_logits(void) { return logits_sum; }

uint32_t tess_state_hash(void) {
    uint32_t hash = 2166136261u;
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        for (int i = 0; i < kHidden; ++i) {
            const uint16_t word = static_cast<uint16_t>(readout_weights[c][i]);
            hash = (hash ^ (word & 0xFFu)) * 16777619u;
            hash = (hash ^ (word >> 8)) * 16777619u;
        }
    }
    return hash;
}

uint32_t tess_buffers(const tess_buffer_t **table) {
    static const tess_buffer_t buffers[] = {
        {"hidden.u", membrane, kHidden, 4},
        {"hidden.o", hidden_spikes, kHidden, 1},
    };
    *table = buffers;
    return sizeof(buffers) / sizeof(buffers[0]);
}

void tess_set_profile_hook(tess_profile_hook_t hook, void *context) {
    profile_hook = hook;
    profile_context = context;
}

const char *tess_layer_name(int32_t layer) {
    return layer == 0 ? "hidden" : (layer == 1 ? "readout" : nullptr);
}

uint32_t tess_synaptic_events(int32_t layer, const int8_t *input) {
    uint32_t events = 0;
    for (int j = 0; layer == 0 && j < TESS_INPUT_SIZE; ++j) {
        events += input[j] != 0 ? kHidden : 0;
    }
    for (int i = 0; layer == 1 && i < kHidden; ++i) {
        events += hidden_spikes[i] != 0u ? TESS_NUM_CLASSES : 0;
    }
    return events;
}

uint32_t tess_state_size(void) { return TESS_STATE_BYTES; }

tess_status_t tess_save_state(uint8_t *buffer, uint32_t capacity, uint32_t *written) {
    if (written != nullptr) {
        *written = 0;
    }
    if (buffer == nullptr) {
        return TESS_ERROR_NULL;
    }
    if (capacity < TESS_STATE_BYTES) {
        return TESS_ERROR_BUFFER_TOO_SMALL;
    }
    const uint8_t header[8] = {'T', 'E', 'S', 'S', TESS_STATE_FORMAT_VERSION, 0, 0, 0};
    uint32_t at = 0;
    for (; at < 8u; ++at) {
        buffer[at] = header[at];
    }
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        for (int i = 0; i < kHidden; ++i, at += 2) {
            const uint16_t word = static_cast<uint16_t>(readout_weights[c][i]);
            buffer[at] = static_cast<uint8_t>(word & 0xFFu);
            buffer[at + 1] = static_cast<uint8_t>(word >> 8);
        }
    }
    const uint32_t crc = crc32(buffer, at);
    for (int byte = 0; byte < 4; ++byte) {
        buffer[at + byte] = static_cast<uint8_t>(crc >> (8 * byte));
    }
    if (written != nullptr) {
        *written = TESS_STATE_BYTES;
    }
    return TESS_OK;
}

tess_status_t tess_load_state(const uint8_t *buffer, uint32_t length) {
    if (buffer == nullptr) {
        return TESS_ERROR_NULL;
    }
    if (length < TESS_STATE_BYTES) {
        return TESS_ERROR_TRUNCATED;
    }
    if (buffer[0] != 'T' || buffer[1] != 'E' || buffer[2] != 'S' || buffer[3] != 'S') {
        return TESS_ERROR_NOT_A_STATE;
    }
    if (buffer[4] != TESS_STATE_FORMAT_VERSION || buffer[5] != 0 || buffer[6] != 0 || buffer[7] != 0) {
        return TESS_ERROR_VERSION;
    }
    const uint32_t body = TESS_STATE_BYTES - 4u;
    const uint32_t stored = static_cast<uint32_t>(buffer[body]) | (static_cast<uint32_t>(buffer[body + 1]) << 8) |
                            (static_cast<uint32_t>(buffer[body + 2]) << 16) |
                            (static_cast<uint32_t>(buffer[body + 3]) << 24);
    if (stored != crc32(buffer, body)) {
        return TESS_ERROR_CHECKSUM;
    }
    uint32_t at = 8;
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        for (int i = 0; i < kHidden; ++i, at += 2) {
            readout_weights[c][i] = static_cast<int16_t>(buffer[at] | (buffer[at + 1] << 8));
        }
    }
    return TESS_OK;
}

void tess_clear_state(void) {
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        for (int i = 0; i < kHidden; ++i) {
            readout_weights[c][i] = 0;
            readout_update[c][i] = 0;
        }
    }
}
