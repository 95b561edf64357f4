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
}

void tess_apply_update(void) {
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        for (int i = 0; i < kHidden; ++i) {
            readout_weights[c][i] = saturate16(readout_weights[c][i] + readout_update[c][i]);
            readout_update[c][i] = 0;
        }
    }
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
