// The demo every firmware runs: measure the exported network on a held-out
// set of a task it was not trained on, let it learn on the device from a
// labelled stream (TESS, one update per sample), measure again, and print one
// JSON result line. The host build runs the same code and prints the
// reference line the firmware must match bit for bit.
#include <stdint.h>

#include "demo_data.h"
#include "platform.h"
#include "tess_engine.h"

namespace {

constexpr int kStepSize = TESS_TIME_STEPS * TESS_INPUT_SIZE;

// A fixed-size JSON line builder: no printf (newlib's allocates), no heap.
class JsonLine {
  public:
    void key(const char *name) {
        append(length_ == 0 ? "{\"" : ", \"");
        append(name);
        append("\": ");
    }
    void text(const char *name, const char *value) {
        key(name);
        append("\"");
        append(value);
        append("\"");
    }
    void null(const char *name) {
        key(name);
        append("null");
    }
    void integer(const char *name, int64_t value) {
        key(name);
        append_integer(value);
    }
    // Writes numerator / denominator with four decimals (rounded half up).
    void ratio(const char *name, uint64_t numerator, uint64_t denominator) {
        key(name);
        if (denominator == 0u) {
            append("null");
            return;
        }
        const uint64_t scaled = (numerator * 10000u + denominator / 2u) / denominator;
        append_integer(static_cast<int64_t>(scaled / 10000u));
        char digits[6] = {'.', 0, 0, 0, 0, 0};
        uint64_t fraction = scaled % 10000u;
        for (int i = 4; i >= 1; --i) {
            digits[i] = static_cast<char>('0' + fraction % 10u);
            fraction /= 10u;
        }
        append(digits);
    }
    void hex(const char *name, uint32_t value) {
        key(name);
        char digits[13] = {'"', '0', 'x'};
        for (int i = 0; i < 8; ++i) {
            digits[3 + i] = "0123456789abcdef"[(value >> (28 - 4 * i)) & 0xFu];
        }
        digits[11] = '"';
        digits[12] = '\0';
        append(digits);
    }
    const char *finish() {
        append("}\n");
        return buffer_;
    }

  private:
    void append(const char *text) {
        while (*text != '\0' && length_ + 1 < sizeof(buffer_)) {
            buffer_[length_++] = *text++;
        }
        buffer_[length_] = '\0';
    }
    void append_integer(int64_t value) {
        char digits[24];
        int count = 0;
        const bool negative = value < 0;
        uint64_t magnitude = negative ? 0u - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
        do {
            digits[count++] = static_cast<char>('0' + magnitude % 10u);
            magnitude /= 10u;
        } while (magnitude != 0u);
        char text[25];
        int length = 0;
        if (negative) {
            text[length++] = '-';
        }
        while (count > 0) {
            text[length++] = digits[--count];
        }
        text[length] = '\0';
        append(text);
    }

    char buffer_[1024] = {};
    uint32_t length_ = 0;
};

struct Counters {
    uint64_t forward_ticks = 0;  // steps without a label (inference only)
    uint64_t forward_steps = 0;
    uint64_t learn_ticks = 0;  // steps with a label (forward + traces + update accumulation)
    uint64_t learn_steps = 0;
    uint64_t update_ticks = 0;  // tess_apply_update()
    uint64_t updates = 0;
};

Counters counters;

// Per-layer profile (tess_set_profile_hook): ticks per layer in each phase,
// and synaptic events per layer during the first held-out pass.
enum Phase { kForward = 0, kLearn = 1, kUpdate = 2 };

struct Profile {
    uint64_t ticks[3][TESS_NUM_LAYERS] = {};
    uint64_t events[TESS_NUM_LAYERS] = {};
    uint64_t event_steps = 0;
    int32_t phase = kForward;
    int32_t layer = TESS_PROFILE_OUTSIDE;
    uint64_t since = 0;
};

Profile profile;

// The time since the last mark belongs to the layer that mark named; the
// clock restarts after the bookkeeping, so the hook's own cost is not charged
// to a layer (only to the totals, about 50 instructions per mark).
void profile_hook(int32_t layer, void *context) {
    (void)context;
    const uint64_t now = tess_platform_ticks();
    if (profile.layer != TESS_PROFILE_OUTSIDE) {
        profile.ticks[profile.phase][profile.layer] += now - profile.since;
    }
    profile.layer = layer;
    profile.since = tess_platform_ticks();
}

// FNV-1a over every logit of every held-out sample: equal hashes mean equal logits.
uint32_t logits_hash = 2166136261u;
int64_t logits_sum = 0;

void hash_logits(const int32_t *logits) {
    for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
        const uint32_t word = static_cast<uint32_t>(logits[c]);
        for (int byte = 0; byte < 4; ++byte) {
            logits_hash = (logits_hash ^ ((word >> (8 * byte)) & 0xFFu)) * 16777619u;
        }
        logits_sum += logits[c];
    }
}

// Spikes and neuron-steps of every spiking layer ("<layer>.o" buffers of the
// engine) during the first held-out pass: the rate the event-driven forward sees.
uint64_t spike_count = 0;
uint64_t neuron_steps = 0;
bool count_spikes = false;

void record_spikes(void) {
    const tess_buffer_t *buffers = nullptr;
    const uint32_t count = tess_buffers(&buffers);
    for (uint32_t b = 0; b < count; ++b) {
        const char *name = buffers[b].name;
        uint32_t length = 0;
        while (name[length] != '\0') {
            ++length;
        }
        if (length < 2 || name[length - 2] != '.' || name[length - 1] != 'o' || buffers[b].elem_bytes != 1) {
            continue;
        }
        const uint8_t *spikes = static_cast<const uint8_t *>(buffers[b].data);
        for (uint32_t i = 0; i < buffers[b].count; ++i) {
            spike_count += spikes[i];
        }
        neuron_steps += buffers[b].count;
    }
}

// Runs one sample through the network; with label >= 0 it also learns.
int32_t run_sample(const int8_t *sample, int32_t label) {
    tess_reset();
    profile.phase = label >= 0 ? kLearn : kForward;
    for (int t = 0; t < TESS_TIME_STEPS; ++t) {
        const uint64_t start = tess_platform_ticks();
        tess_step(sample + t * TESS_INPUT_SIZE, label);
        const uint64_t elapsed = tess_platform_ticks() - start;
        if (count_spikes) {  // outside the timed region
            record_spikes();
            for (int32_t layer = 0; layer < TESS_NUM_LAYERS; ++layer) {
                profile.events[layer] += tess_synaptic_events(layer, sample + t * TESS_INPUT_SIZE);
            }
            ++profile.event_steps;
        }
        if (label >= 0) {
            counters.learn_ticks += elapsed;
            ++counters.learn_steps;
        } else {
            counters.forward_ticks += elapsed;
            ++counters.forward_steps;
        }
    }
    return tess_predict();
}

// Returns how many held-out samples the network classifies correctly.
int32_t evaluate(bool record_logits) {
    int32_t correct = 0;
    for (int i = 0; i < TESS_DEMO_TEST_COUNT; ++i) {
        const int32_t label = static_cast<int32_t>(tess_demo_test_labels[i]);
        if (run_sample(tess_demo_test_inputs + i * kStepSize, -1) == label) {
            ++correct;
        }
        if (record_logits) {
            hash_logits(tess_logits());
        }
    }
    return correct;
}

// Passes over the labelled stream, and samples per weight update; the export
// may choose them in demo_data.h.
#ifndef TESS_DEMO_EPOCHS
#define TESS_DEMO_EPOCHS 1
#endif
#ifndef TESS_DEMO_BATCH
#define TESS_DEMO_BATCH 1
#endif

void apply_update(void) {
    profile.phase = kUpdate;
    const uint64_t start = tess_platform_ticks();
    tess_apply_update();
    counters.update_ticks += tess_platform_ticks() - start;
    ++counters.updates;
}

int32_t learn(void) {
    int32_t seen = 0;
    for (int epoch = 0; epoch < TESS_DEMO_EPOCHS; ++epoch) {
        for (int i = 0; i < TESS_DEMO_LEARN_COUNT; ++i) {
            run_sample(tess_demo_learn_inputs + i * kStepSize, static_cast<int32_t>(tess_demo_learn_labels[i]));
            ++seen;
            if (seen % TESS_DEMO_BATCH == 0) {
                apply_update();
            }
        }
    }
    if (seen % TESS_DEMO_BATCH != 0) {
        apply_update();
    }
    return seen;
}

void per_step(JsonLine &line, const char *name, uint64_t ticks, uint64_t steps, bool measured) {
    if (measured) {
        line.ratio(name, tess_platform_ticks_to_units(ticks), steps);
    } else {
        line.null(name);
    }
}

#if defined(TESS_WITH_DENSE_REFERENCE)
}  // namespace

// The second copy of the engine, compiled with TESS_DENSE_REFERENCE (dense_names.h).
extern "C" {
void tess_dense_reset(void);
void tess_dense_step(const int8_t *input, int32_t label);
const int32_t *tess_dense_logits(void);
}

namespace {

uint64_t dense_ticks = 0;
uint64_t dense_steps = 0;

// Runs the held-out set through the event-driven engine and the dense
// reference (same initial weights), timing the dense forward; returns how many
// samples end with identical summed logits (all of them, or the forwards differ).
int32_t compare_with_dense_reference(void) {
    int32_t identical = 0;
    for (int i = 0; i < TESS_DEMO_TEST_COUNT; ++i) {
        const int8_t *sample = tess_demo_test_inputs + i * kStepSize;
        tess_reset();
        tess_dense_reset();
        for (int t = 0; t < TESS_TIME_STEPS; ++t) {
            tess_step(sample + t * TESS_INPUT_SIZE, -1);
            const uint64_t start = tess_platform_ticks();
            tess_dense_step(sample + t * TESS_INPUT_SIZE, -1);
            dense_ticks += tess_platform_ticks() - start;
            ++dense_steps;
        }
        bool same = true;
        for (int c = 0; c < TESS_NUM_CLASSES; ++c) {
            same = same && tess_logits()[c] == tess_dense_logits()[c];
        }
        identical += same ? 1 : 0;
    }
    return identical;
}
#endif

// Times a loop of exactly 2 * kCalibrationLoops instructions (subs + bne),
// so the result line shows whether a tick really is one instruction/cycle.
constexpr uint32_t kCalibrationLoops = 50000u;

uint64_t calibration_ticks(void) {
#if defined(__arm__)
    const uint64_t start = tess_platform_ticks();
    uint32_t remaining = kCalibrationLoops;
    __asm volatile(
        "1: subs %0, %0, #1\n"
        "   bne 1b\n"
        : "+r"(remaining)
        :
        : "cc");
    return tess_platform_ticks() - start;
#else
    return 0u;
#endif
}

// One JSON line per layer (before the result line, which is full).
void print_profile(bool measured) {
    for (int32_t layer = 0; layer < TESS_NUM_LAYERS; ++layer) {
        JsonLine row;
        row.integer("tess_profile", layer);
        row.text("layer", tess_layer_name(layer));
        per_step(row, "forward_per_step", profile.ticks[kForward][layer], counters.forward_steps, measured);
        per_step(row, "learn_per_step", profile.ticks[kLearn][layer], counters.learn_steps, measured);
        per_step(row, "update_per_call", profile.ticks[kUpdate][layer], counters.updates, measured);
        row.ratio("synaptic_events_per_step", profile.events[layer], profile.event_steps);
        tess_platform_write(row.finish());
    }
}

// The learned state is serialised here, then kept by tess_platform_store: in
// a flash area on the real boards (it survives a reset and a power cycle), in
// this buffer itself in QEMU and on the host.
uint8_t saved_state[TESS_STATE_BYTES];

struct Reload {
    int32_t save_status = -1;
    int32_t store_status = -1;  // tess_platform_store (non-zero: reloaded from the RAM copy instead)
    int32_t corrupt_status = -1;  // loading the state with one bit flipped
    int32_t load_status = -1;
    uint32_t cleared_hash = 0;
    uint32_t reloaded_hash = 0;
    int32_t correct_reloaded = -1;
};

// Saves and stores the learned state, clears the model, checks that a
// corrupted copy is refused (and changes nothing), loads the stored state back
// and measures again.
Reload save_clear_load(void) {
    Reload reload;
    uint32_t written = 0;
    reload.save_status = tess_save_state(saved_state, sizeof(saved_state), &written);
    reload.store_status = tess_platform_store(saved_state, written);
    tess_clear_state();
    reload.cleared_hash = tess_state_hash();
    saved_state[TESS_STATE_BYTES / 2] ^= 0x10u;
    reload.corrupt_status = tess_load_state(saved_state, written);
    saved_state[TESS_STATE_BYTES / 2] ^= 0x10u;
    if (tess_state_hash() != reload.cleared_hash) {
        reload.corrupt_status = -2;  // a refused load changed the model
    }
    uint32_t stored_bytes = written;
    const uint8_t *stored = reload.store_status == 0 ? tess_platform_stored(&stored_bytes) : nullptr;
    if (stored == nullptr) {  // the storage failed: the RAM copy still shows the engine's side
        stored = saved_state;
        stored_bytes = written;
    }
    reload.load_status = tess_load_state(stored, stored_bytes);
    reload.reloaded_hash = tess_state_hash();
    reload.correct_reloaded = evaluate(false);
    return reload;
}

}  // namespace

int main(void) {
    tess_platform_init();
    tess_platform_write("tess demo: held-out accuracy, on-device learning, held-out accuracy, save/clear/load\n");
    tess_set_profile_hook(profile_hook, nullptr);

    count_spikes = true;
    const int32_t correct_before = evaluate(false);
    count_spikes = false;
#if defined(TESS_WITH_DENSE_REFERENCE)
    const int32_t dense_identical = compare_with_dense_reference();
#endif
    const int32_t samples_seen = learn();
    const int32_t correct_after = evaluate(true);
    const uint32_t state_hash = tess_state_hash();
    const Reload reload = save_clear_load();

    const bool measured = tess_platform_tick_unit()[0] != 'n';  // "none" on the host
    JsonLine line;
    line.integer("tess_result", 1);
    line.text("board", tess_platform_board());
    line.ratio("accuracy_before", static_cast<uint64_t>(correct_before), TESS_DEMO_TEST_COUNT);
    line.ratio("accuracy_after", static_cast<uint64_t>(correct_after), TESS_DEMO_TEST_COUNT);
    line.integer("correct_before", correct_before);
    line.integer("correct_after", correct_after);
    line.integer("test_samples", TESS_DEMO_TEST_COUNT);
    line.integer("samples_seen", samples_seen);
    line.integer("time_steps", TESS_TIME_STEPS);
    line.integer("batch", TESS_DEMO_BATCH);
    line.text("tick_unit", tess_platform_tick_unit());
    per_step(line, "forward_per_step", counters.forward_ticks, counters.forward_steps, measured);
    per_step(line, "learn_per_step", counters.learn_ticks, counters.learn_steps, measured);
    per_step(line, "update_per_call", counters.update_ticks, counters.updates, measured);
#if defined(TESS_WITH_DENSE_REFERENCE)
    per_step(line, "dense_forward_per_step", dense_ticks, dense_steps, measured);
    line.integer("dense_identical_samples", dense_identical);
#endif
    if (measured) {
        line.integer("calibration_loop", static_cast<int64_t>(2u * kCalibrationLoops));
        line.integer("calibration_measured", static_cast<int64_t>(tess_platform_ticks_to_units(calibration_ticks())));
    }
    line.ratio("spike_rate", spike_count, neuron_steps);
    line.hex("state_hash", state_hash);
    line.integer("state_bytes", TESS_STATE_BYTES);
    line.integer("save_status", reload.save_status);
    line.integer("store_status", reload.store_status);
    line.integer("corrupt_load_status", reload.corrupt_status);
    line.integer("load_status", reload.load_status);
    line.hex("cleared_state_hash", reload.cleared_hash);
    line.hex("reloaded_state_hash", reload.reloaded_hash);
    line.integer("correct_reloaded", reload.correct_reloaded);
    line.hex("logits_hash", logits_hash);
    line.integer("logits_sum", logits_sum);
    line.integer("stack_bytes", tess_platform_stack_used());
    print_profile(measured);
    tess_platform_write(line.finish());
    return 0;
}
