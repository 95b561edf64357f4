// kernel_check.cc: every fast kernel (tess_fast.h) against its reference
// (tess_kernels.h), bit for bit, on random shapes, spike rates and values,
// extremes included (all-+-127 weights past 255 active inputs, int32-wide
// accumulators, shifts 1..62). Built for the host (DSP operations emulated in
// C, under ASan/UBSan) and for every QEMU board (the real instructions); see
// tests/test_kernels.py. Prints one JSON line; exit status 0 when every case
// matched and every kernel took its fast path at least once.
#include <stdint.h>
#include <string.h>

#include "platform.h"
#include "tess_fast.h"
#include "tess_kernels.h"
#include "tess_simd.h"

#ifndef TESS_KERNEL_CHECK_CASES
#define TESS_KERNEL_CHECK_CASES 240
#endif

namespace {

constexpr int32_t kMaxMap = 2048;      // input values / neurons
constexpr int32_t kMaxWeights = 16384;
constexpr int32_t kMaxChannels = 40;

uint32_t rng_state = 0x2545F491u;

uint32_t next(void) {  // xorshift32
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}

int32_t uniform(int32_t low, int32_t high) {  // [low, high]
  return low + (int32_t)(next() % (uint32_t)(high - low + 1));
}

bool chance(uint32_t percent) { return next() % 100u < percent; }

// A value of a random magnitude: small, mid, or near the limits of int32.
int32_t wide_value(void) {
  switch (next() % 4u) {
    case 0: return uniform(-100, 100);
    case 1: return uniform(-70000, 70000);
    case 2: return (int32_t)next();
    default: return chance(50) ? INT32_MAX - uniform(0, 1000) : INT32_MIN + uniform(0, 1000);
  }
}

// Buffers of one case (static: the firmware has no heap).
int8_t weights[kMaxWeights];
int8_t input[kMaxMap];
int32_t acc_ref[kMaxMap], acc_fast[kMaxMap];
uint32_t mask[kMaxMap];
int16_t u_ref[kMaxMap], u_fast[kMaxMap], q[kMaxMap];
uint8_t o_ref[kMaxMap], o_fast[kMaxMap];
uint32_t e_pairs[kMaxMap], e_fast[kMaxMap];  // (e_pre, e_post) int16 halves
int32_t g_ref[kMaxWeights], g_fast[kMaxWeights];
int16_t g16_ref[kMaxWeights], g16_fast[kMaxWeights];
int8_t w_ref[kMaxWeights], w_fast[kMaxWeights];
int16_t packed[kMaxWeights + kMaxChannels];
int64_t gsum[kMaxChannels];
int32_t mult[kMaxChannels];
int8_t shift[kMaxChannels];

struct Tally {
  uint32_t cases = 0, fast = 0, mismatches = 0;
};
Tally currents_tally, fire_tally, traces_tally, dw_tally, update_tally, readout_tally, rescale_tally, eligibility_tally;
int32_t rescaled_ref[256], rescaled_fast[256];
int16_t q_fast[kMaxMap], h_ref[kMaxMap], h_fast[kMaxMap];
const char *first_mismatch = "";

void check(Tally &tally, bool fast, const void *a, const void *b, uint32_t bytes, const char *what) {
  ++tally.cases;
  if (!fast) return;
  ++tally.fast;
  if (memcmp(a, b, bytes) != 0) {
    ++tally.mismatches;
    if (first_mismatch[0] == '\0') first_mismatch = what;
  }
}

// A random conv or dense layer whose weights, input and outputs fit the buffers.
tess_spiking_t random_layer(void) {
  tess_spiking_t layer;
  memset(&layer, 0, sizeof(layer));
  for (;;) {
    layer.kind = chance(65) ? TESS_LAYER_CONV : TESS_LAYER_DENSE;
    layer.analog = chance(30) ? 1 : 0;
    if (layer.kind == TESS_LAYER_CONV) {
      tess_conv_shape_t &s = layer.conv;
      static const int32_t kSizes[] = {1, 2, 3, 3, 5};
      s.k = kSizes[next() % 5u];
      s.stride = chance(70) ? 1 : 2;
      s.h = uniform(1, 9);
      s.w = uniform(1, 9);
      s.ci = uniform(1, chance(30) ? 40 : 8);
      s.co = uniform(1, kMaxChannels);
      s.pad_top = uniform(0, s.k - 1);
      s.pad_left = uniform(0, s.k - 1);
      s.oh = (s.h + 2 * s.pad_top - s.k) / s.stride + 1;
      s.ow = (s.w + 2 * s.pad_left - s.k) / s.stride + 1;
      if (s.oh < 1 || s.ow < 1) continue;
      layer.nin = s.h * s.w * s.ci;
      layer.co = s.co;
      layer.n = s.oh * s.ow * s.co;
      layer.weight_count = s.k * s.k * s.ci * s.co;
    } else {
      layer.nin = uniform(1, chance(30) ? 600 : 64);
      layer.co = uniform(1, 24);
      layer.n = layer.co;
      layer.weight_count = layer.nin * layer.co;
    }
    if (layer.nin <= kMaxMap && layer.n <= kMaxMap && layer.weight_count <= kMaxWeights) return layer;
  }
}

void fill_input(const tess_spiking_t &layer) {
  static const uint32_t kRates[] = {0, 3, 20, 50, 90, 100};
  const uint32_t rate = kRates[next() % 6u];
  for (int32_t i = 0; i < layer.nin; ++i) {
    const bool active = next() % 100u < rate;
    input[i] = !active ? 0 : (layer.analog ? (int8_t)uniform(-128, 127) : 1);
  }
}

void fill_weights(int32_t count) {
  const uint32_t mode = next() % 3u;  // random, all +127, all -127
  for (int32_t i = 0; i < count; ++i) {
    weights[i] = mode == 0 ? (int8_t)uniform(-127, 127) : (mode == 1 ? 127 : -127);
  }
}

void check_currents(void) {
  const tess_spiking_t layer = random_layer();
  fill_weights(layer.weight_count);
  fill_input(layer);
  tess_spiking_currents(&layer, weights, input, acc_ref, 0);
  // int8 input: the SMLAD path (packed weights) or, without its scratch, SMLABB/SMLATB
  const bool fast = tess_fast_currents(&layer, weights, input, acc_fast, mask, chance(70) ? packed : nullptr) != 0;
  check(currents_tally, fast, acc_ref, acc_fast, (uint32_t)layer.n * 4u, "currents");
}

void check_readout(void) {
  tess_readout_t readout;
  memset(&readout, 0, sizeof(readout));
  readout.nin = uniform(1, 600);
  readout.classes = uniform(1, 20);
  fill_weights(readout.nin * readout.classes);
  static const uint32_t kRates[] = {0, 5, 30, 80, 100};
  const uint32_t rate = kRates[next() % 5u];
  for (int32_t i = 0; i < readout.nin; ++i) input[i] = next() % 100u < rate ? 1 : 0;
  const uint8_t *spikes = reinterpret_cast<const uint8_t *>(input);
  tess_readout_currents(&readout, weights, spikes, acc_ref, 0);
  const bool fast = tess_fast_readout(&readout, weights, spikes, acc_fast, mask) != 0;
  check(readout_tally, fast, acc_ref, acc_fast, (uint32_t)readout.classes * 4u, "readout");
}

void check_fire(void) {
  tess_spiking_t layer = random_layer();
  for (int32_t c = 0; c < layer.co; ++c) {
    mult[c] = chance(70) ? uniform(1 << 30, INT32_MAX) : wide_value();
    shift[c] = (int8_t)(chance(30) ? uniform(31, 34) : uniform(1, 62));
  }
  layer.current_mult = mult;
  layer.current_shift = shift;
  layer.gamma = chance(80) ? uniform(0, 32768) : uniform(-40000, 70000);
  layer.reset_amount = chance(80) ? uniform(0, 32768) : uniform(-40000, 70000);
  layer.threshold = uniform(-4096, 8192);
  // A quarter of the cases sweep consecutive membranes past a rounding tie of the leak (gamma 1..3).
  const bool sweep = chance(25);
  const int32_t base = 16383 - uniform(0, layer.n - 1);
  if (sweep) layer.gamma = uniform(1, 3);
  for (int32_t n = 0; n < layer.n; ++n) {
    acc_ref[n] = wide_value();
    u_ref[n] = u_fast[n] = (int16_t)(sweep ? base + n : uniform(-32768, 32767));
    o_ref[n] = o_fast[n] = sweep ? 0 : (uint8_t)(next() & 1u);
  }
  tess_spiking_state_t ref = {u_ref, o_ref, nullptr, nullptr, nullptr, nullptr};
  tess_spiking_state_t fast_state = {u_fast, o_fast, nullptr, nullptr, nullptr, nullptr};
  tess_spiking_fire(&layer, &ref, acc_ref);
  const bool fast = tess_fast_fire(&layer, &fast_state, acc_ref) != 0;
  check(fire_tally, fast, u_ref, u_fast, (uint32_t)layer.n * 2u, "fire u");
  if (fast && memcmp(o_ref, o_fast, (size_t)layer.n) != 0) check(fire_tally, true, "a", "b", 1u, "fire o");
}

// The LIF update with one shift class for every channel (all >= 33, or all 1..32 with sums
// mostly below 2^(shift-1)), channel counts 4k and 4k + 1..3: the fast path's whole
// blocks of channels (Helium: four a vector), the tail block and the wide-sum fallback.
// Its own random stream, so the other kernels' cases stay what they were.
uint32_t fire_blocks_rng = 0x9E3779B9u;

void check_fire_blocks(void) {
  const uint32_t shared_rng = rng_state;
  rng_state = fire_blocks_rng;
  tess_spiking_t layer = random_layer();
  const bool high = chance(50);
  for (int32_t c = 0; c < layer.co; ++c) {
    mult[c] = chance(70) ? uniform(1 << 30, INT32_MAX) : wide_value();
    shift[c] = (int8_t)(high ? uniform(33, 62) : uniform(1, 32));
  }
  layer.current_mult = mult;
  layer.current_shift = shift;
  layer.gamma = uniform(0, 32768);
  layer.reset_amount = uniform(0, 32768);
  layer.threshold = uniform(-4096, 8192);
  for (int32_t n = 0; n < layer.n; ++n) {
    const int32_t s = shift[n % layer.co], limit = s >= 31 ? (1 << 30) - 1 : (1 << (s - 1)) - 1;
    acc_ref[n] = !high && chance(95) ? uniform(-limit, limit) : wide_value();
    u_ref[n] = u_fast[n] = (int16_t)uniform(-32768, 32767);
    o_ref[n] = o_fast[n] = (uint8_t)(next() & 1u);
  }
  tess_spiking_state_t ref = {u_ref, o_ref, nullptr, nullptr, nullptr, nullptr};
  tess_spiking_state_t fast_state = {u_fast, o_fast, nullptr, nullptr, nullptr, nullptr};
  tess_spiking_fire(&layer, &ref, acc_ref);
  const bool fast = tess_fast_fire(&layer, &fast_state, acc_ref) != 0;
  check(fire_tally, fast, u_ref, u_fast, (uint32_t)layer.n * 2u, "fire blocks u");
  if (fast && memcmp(o_ref, o_fast, (size_t)layer.n) != 0) check(fire_tally, true, "a", "b", 1u, "fire blocks o");
  fire_blocks_rng = rng_state;
  rng_state = shared_rng;
}

// tess_rescale_fast against tess_rescale, shifts biased to the class edges (1..3, 31..35).
void check_rescale(void) {
  for (int32_t i = 0; i < 256; ++i) {
    static const int32_t kEdges[] = {1, 2, 3, 31, 32, 33, 34, 35};
    const int32_t x = wide_value(), mult = chance(50) ? uniform(1 << 30, INT32_MAX) : wide_value();
    const int32_t shift = chance(60) ? kEdges[next() % 8u] : uniform(1, 62);
    rescaled_ref[i] = tess_rescale(x, mult, shift);
    rescaled_fast[i] = tess_rescale_fast(x, mult, shift);
  }
  check(rescale_tally, true, rescaled_ref, rescaled_fast, sizeof(rescaled_ref), "rescale");
}

void check_traces(void) {
  tess_spiking_t layer = random_layer();
  tess_learning_t learning;
  memset(&learning, 0, sizeof(learning));
  learning.lambda_pre = chance(85) ? uniform(0, 32768) : uniform(-40000, 70000);
  learning.lambda_post = chance(85) ? uniform(0, 32768) : uniform(-40000, 70000);
  learning.alpha_post = chance(70) ? 1 : 0;
  learning.trace_frac = uniform(0, 13);
  layer.learning = &learning;
  layer.threshold = uniform(0, 4096);
  layer.psi_scale = chance(85) ? uniform(0, 65536) : uniform(0, 1 << 22);
  fill_input(layer);
  for (int32_t i = 0; i < layer.nin; ++i) q[i] = q_fast[i] = (int16_t)uniform(-32768, 32767);
  for (int32_t n = 0; n < layer.n; ++n) {
    h_ref[n] = h_fast[n] = (int16_t)uniform(-32768, 32767);
    u_ref[n] = (int16_t)(chance(50) ? layer.threshold + uniform(-2100, 2100) : uniform(-32768, 32767));
  }
  const int32_t t = uniform(0, 2);
  tess_spiking_state_t ref = {u_ref, nullptr, q, h_ref, nullptr, nullptr};
  tess_spiking_state_t fast_state = {u_ref, nullptr, q_fast, h_fast, nullptr, nullptr};
  tess_spiking_traces(&layer, &ref, input, t);
  const bool fast = tess_fast_traces(&layer, &fast_state, input, t) != 0;
  check(traces_tally, fast, q, q_fast, (uint32_t)layer.nin * 2u, "traces q");
  if (fast && learning.alpha_post != 0 && memcmp(h_ref, h_fast, (size_t)layer.n * 2u) != 0) {
    check(traces_tally, true, "a", "b", 1u, "traces h");
  }
}

// The learning signal (Helium only): B of any size (multiples of 8 take the fast path), its bits
// at any density, the cells' spike counts small or near the limits of int32 (the sums saturate),
// any multiplier and shift, every label.
constexpr int32_t kMaxCells = 256, kMaxClasses = 20;
Tally signal_tally;
uint8_t lsg_bits[kMaxClasses * kMaxCells / 8];
int32_t cells_ref[kMaxCells], cells_fast[kMaxCells], z[kMaxClasses], err[kMaxClasses];

void check_signal(void) {
  tess_learning_t learning;
  memset(&learning, 0, sizeof(learning));
  const int32_t n = chance(80) ? 8 * uniform(1, kMaxCells / 8) : uniform(1, kMaxCells);
  const int32_t classes = uniform(1, kMaxClasses);
  learning.lsg_size = n;
  learning.lsg_row_bytes = (n + 7) / 8;
  learning.lsg_bits = lsg_bits;
  learning.lsg_mult = chance(70) ? 1073741824 : wide_value();
  learning.lsg_shift = uniform(1, 40);
  const uint32_t density = next() % 101u;
  for (int32_t i = 0; i < classes * learning.lsg_row_bytes; ++i) {
    uint32_t byte = 0;
    for (int32_t bit = 0; bit < 8; ++bit) byte |= (next() % 100u < density ? 1u : 0u) << bit;
    lsg_bits[i] = (uint8_t)byte;
  }
  const bool wide = chance(25);
  for (int32_t k = 0; k < n; ++k) cells_ref[k] = cells_fast[k] = wide ? wide_value() : uniform(0, 64);
  const int32_t label = uniform(0, classes - 1);
  tess_scratch_t scratch;
  memset(&scratch, 0, sizeof(scratch));
  scratch.z = z;
  scratch.err = err;
  scratch.cells = cells_ref;
  tess_learning_signal(&learning, classes, label, &scratch);
  scratch.cells = cells_fast;
  const bool fast = tess_fast_learning_signal(&learning, classes, label, &scratch) != 0;
  check(signal_tally, fast, cells_ref, cells_fast, (uint32_t)n * 4u, "signal");
}

// An int16 value: small, mid, or at the limits (-32768 included).
int16_t value16(bool big) {
  if (!big) return (int16_t)uniform(-2000, 2000);
  return (int16_t)(chance(30) ? (chance(50) ? 32767 - uniform(0, 3) : -32768 + uniform(0, 3)) : uniform(-32768, 32767));
}

// e per neuron: g of any magnitude (zero for many neurons, as through a max-pool), membranes
// near and far from the threshold, traces at the int16 limits, the multipliers as exported
// (alpha 1, psi scale < 2^16) or anywhere (past the fast path's bounds too).
void check_eligibility(void) {
  tess_spiking_t layer = random_layer();
  tess_learning_t learning;
  memset(&learning, 0, sizeof(learning));
  const auto alpha = []() { return chance(60) ? 1 : (chance(70) ? uniform(-40000, 40000) : wide_value()); };
  learning.alpha_pre = alpha();
  learning.alpha_post = chance(30) ? 0 : alpha();
  layer.learning = &learning;
  layer.threshold = uniform(0, 4096);
  layer.psi_scale = chance(80) ? uniform(0, 65536) : (chance(70) ? uniform(0, 1 << 21) : uniform(-1000, 0));
  const uint32_t zero = next() % 100u;
  for (int32_t n = 0; n < layer.n; ++n) {
    h_ref[n] = value16(chance(50));
    u_ref[n] = (int16_t)(chance(60) ? layer.threshold + uniform(-2100, 2100) : uniform(-32768, 32767));
    g_ref[n] = next() % 100u < zero ? 0 : wide_value();
  }
  tess_spiking_state_t state = {u_ref, nullptr, nullptr, h_ref, nullptr, nullptr};
  tess_eligibility(&layer, &state, g_ref, e_pairs);
  const bool fast = tess_fast_eligibility(&layer, &state, g_ref, e_fast) != 0;
  check(eligibility_tally, fast, e_pairs, e_fast, (uint32_t)layer.n * 4u, "eligibility");
}

// Half the dW cases in the shape the Helium path takes: stride-1 convs with channels and output
// positions in fours.
tess_spiking_t dw_layer(void) {
  if (chance(50)) return random_layer();
  for (;;) {
    const tess_spiking_t layer = random_layer();
    const tess_conv_shape_t &s = layer.conv;
    if (layer.kind == TESS_LAYER_CONV && s.stride == 1 && s.co % 4 == 0 && (s.oh * s.ow) % 4 == 0) return layer;
  }
}

void check_dw(void) {
  tess_spiking_t layer = dw_layer();
  tess_learning_t learning;
  memset(&learning, 0, sizeof(learning));
  learning.alpha_post = chance(70) ? 1 : 0;
  learning.trace_frac = uniform(0, 14);
  // Shifts from 1 (sums may leave int32 after the shift: the exact path) to past 32.
  learning.grad_shift = chance(60) ? uniform(1, 12) : uniform(13, 40);
  layer.learning = &learning;
  fill_input(layer);
  const bool big = chance(40);
  for (int32_t i = 0; i < layer.nin; ++i) q[i] = chance(40) ? 0 : value16(big);
  for (int32_t n = 0; n < layer.n; ++n) {
    const int16_t pre = chance(45) ? 0 : value16(big), post = learning.alpha_post == 0 || chance(45) ? 0 : value16(big);
    e_pairs[n] = (uint32_t)(uint16_t)pre | ((uint32_t)(uint16_t)post << 16);
  }
  for (int32_t i = 0; i < layer.weight_count; ++i) g16_ref[i] = g16_fast[i] = value16(chance(50));
  tess_spiking_state_t ref = {nullptr, nullptr, q, nullptr, g16_ref, nullptr};
  tess_spiking_state_t fast_state = {nullptr, nullptr, q, nullptr, g16_fast, nullptr};
  tess_scratch_t scratch = {acc_fast, e_pairs, nullptr, gsum, nullptr, nullptr, nullptr, nullptr};
  tess_accumulate_dw(&layer, &ref, input, &scratch);
  const bool fast = tess_fast_accumulate_dw(&layer, &fast_state, input, &scratch) != 0;
  check(dw_tally, fast, g16_ref, g16_fast, (uint32_t)layer.weight_count * 2u, "dW");
}

// One update case: any multipliers and shifts, or as an export's spiking layer (layer_like: one
// shift, int16-sized multipliers, 1..32 channels, a power of two: the rows the DSP cores'
// assembly pair loop takes), or as its readout (readout_like: one channel, an int16-sized
// multiplier, int32 accumulators mostly inside int16). mixed: as the export gives them, each
// channel its own multiplier and shift (the Helium path's lanes), channel counts it takes
// (dividing 8 or multiples of 8, with short last groups) and others, accumulators at 0 and the
// int16 limits; with readout_like, int32 accumulators around its bound 2^(31 - up) (up = 16 -
// shift, 0 past 16: |g| at the bound goes to the reference) and far past it, and the last row
// sometimes cut short (count need not be a multiple of channels).
void update_case(bool layer_like, bool readout_like, bool mixed) {
  // Weights and accumulators past count (at most 40 * 300, room left in the buffers),
  // compared too: a short last group must leave them as they are.
  constexpr int32_t kGuard = 16;
  static const int32_t kMixedChannels[] = {1, 2, 4, 8, 16, 24, 32, 40, 3, 6, 12, 20};
  const int32_t channels = mixed && layer_like ? kMixedChannels[next() % 12u]
                         : layer_like         ? 1 << uniform(0, 5)
                         : readout_like       ? 1
                                              : uniform(1, kMaxChannels);
  const int32_t rows = mixed && chance(20) ? uniform(1, 3) : uniform(1, 300);
  int32_t count = channels * rows - (channels == 1 && chance(50) ? 1 : 0) + (channels == 1 ? 1 : 0);
  if (mixed && channels > 1 && chance(10)) count -= uniform(1, channels - 1);  // the last row cut short
  for (int32_t c = 0; c < channels; ++c) {
    mult[c] = chance(50) ? uniform(1 << 30, INT32_MAX) : wide_value();
    shift[c] = (int8_t)(chance(30) ? uniform(31, 34) : uniform(1, 62));
    if (chance(30)) {  // steps of a few LSB, where the stochastic rounding decides: below shift 32 ...
      mult[c] = uniform(1, 1 << 16);
      shift[c] = (int8_t)uniform(20, 31);
    } else if (chance(30)) {  // ... as the export gives the int16 accumulators (mult < 2^15, shift <= 31) ...
      mult[c] = chance(90) ? uniform(1 << 14, 32767) : uniform(-32767, 32767);
      shift[c] = (int8_t)(chance(60) ? uniform(8, 14) : uniform(1, 31));  // 8..14: steps of a few LSB
    } else if (chance(40)) {  // ... and as exported learning rates give them (shift 40..50)
      mult[c] = uniform(1 << 30, INT32_MAX);
      shift[c] = (int8_t)uniform(40, 50);
    }
  }
  if (layer_like) {
    const int8_t layer_shift = (int8_t)(chance(60) ? uniform(8, 14) : uniform(1, 31));
    for (int32_t c = 0; c < channels; ++c) {
      mult[c] = chance(90) ? uniform(1 << 14, 32767) : uniform(-32767, 32767);
      shift[c] = layer_shift;
      if (mixed && chance(50)) shift[c] = (int8_t)(chance(20) ? (chance(50) ? 1 : 31) : uniform(1, 31));
      if (mixed && chance(5)) mult[c] = chance(50) ? 32767 : -32767;
    }
  }
  if (readout_like) {
    mult[0] = chance(90) ? uniform(1 << 14, 32767) : uniform(-32767, 32767);
    shift[0] = (int8_t)(chance(60) ? uniform(8, 14) : uniform(1, 31));
    if (mixed && chance(10)) mult[0] = chance(50) ? 32767 : -32767;
  }
  const uint32_t seed = next(), counter = next();
  if (!readout_like && (layer_like || chance(50))) {  // int16 accumulators (spiking layers), zero in pairs and alone
    for (int32_t i = 0; i < count; ++i) {
      g16_ref[i] = g16_fast[i] = chance(20) ? 0 : value16(chance(50));
      if (mixed && chance(10)) g16_ref[i] = g16_fast[i] = (int16_t)(chance(50) ? -32768 : 32767);
      w_ref[i] = w_fast[i] = (int8_t)uniform(-127, 127);
    }
    for (int32_t i = count; i < count + kGuard; ++i) {  // past the end: must stay as they are
      g16_ref[i] = g16_fast[i] = (int16_t)(i * 40503);
      w_ref[i] = w_fast[i] = (int8_t)(i * 37 % 255 - 127);
    }
    if (chance(30)) {
      for (int32_t i = 0; i + 1 < count; i += 2 * uniform(1, 3)) g16_ref[i] = g16_fast[i] = g16_ref[i + 1] = g16_fast[i + 1] = 0;
    }
    tess_sgd_update(w_ref, g16_ref, count, channels, mult, shift, seed, counter);
    const bool fast = tess_fast_update(w_fast, g16_fast, count, channels, mult, shift, seed, counter) != 0;
    check(update_tally, fast, w_ref, w_fast, (uint32_t)(count + kGuard), "update w");
    if (fast && memcmp(g16_ref, g16_fast, (size_t)(count + kGuard) * 2u) != 0) {
      check(update_tally, true, "a", "b", 1u, "update g");
    }
    return;
  }
  for (int32_t i = 0; i < count; ++i) {  // int32 accumulators (the readout's)
    g_ref[i] = g_fast[i] = chance(20) ? 0 : (readout_like && chance(90) ? value16(chance(50)) : wide_value());
    if (mixed && chance(15)) {
      const int32_t up = shift[0] < 16 ? 16 - shift[0] : 0;  // 2^(31 - up) - 1 is inside the bound, 2^(31 - up) not
      const int32_t edge = up > 0 ? (1 << (31 - up)) - uniform(0, 1) : INT32_MAX;
      static const int32_t kLimits[] = {0, 32768, -32768, 32767, INT32_MIN};
      g_ref[i] = g_fast[i] = chance(50) ? (chance(50) ? edge : -edge) : kLimits[next() % 5u];
    }
    w_ref[i] = w_fast[i] = (int8_t)uniform(-127, 127);
  }
  for (int32_t i = count; i < count + kGuard; ++i) {
    g_ref[i] = g_fast[i] = (int32_t)((uint32_t)i * 2654435761u);
    w_ref[i] = w_fast[i] = (int8_t)(i * 37 % 255 - 127);
  }
  tess_sgd_update32(w_ref, g_ref, count, channels, mult, shift, seed, counter);
  const bool fast = tess_fast_update32(w_fast, g_fast, count, channels, mult, shift, seed, counter) != 0;
  check(update_tally, fast, w_ref, w_fast, (uint32_t)(count + kGuard), "update32 w");
  if (fast && memcmp(g_ref, g_fast, (size_t)(count + kGuard) * 4u) != 0) {
    check(update_tally, true, "a", "b", 1u, "update32 g");
  }
}

// A case of any kind, one as the export gives them, and one with each channel its own shift.
// The last draws from a stream of its own (and the others' filler past count is fixed), so
// every other case of every kernel is the one it was before it came.
void check_update(void) {
  update_case(false, false, false);
  const bool layer_like = chance(60);
  update_case(layer_like, !layer_like, false);
  static uint32_t mixed_state = 0x9E3779B9u;
  const uint32_t main_state = rng_state;
  rng_state = mixed_state;
  const bool mixed_layer = chance(60);
  update_case(mixed_layer, !mixed_layer, true);
  mixed_state = rng_state;
  rng_state = main_state;
}

// Minimal JSON writing without printf (newlib's allocates).
char line[512];
uint32_t length = 0;

void put(const char *text) {
  while (*text != '\0' && length + 1 < sizeof(line)) line[length++] = *text++;
  line[length] = '\0';
}

void put_number(uint32_t value) {
  char digits[12];
  int count = 0;
  do {
    digits[count++] = (char)('0' + value % 10u);
    value /= 10u;
  } while (value != 0u);
  char text[12];
  for (int i = 0; i < count; ++i) text[i] = digits[count - 1 - i];
  text[count] = '\0';
  put(text);
}

void put_tally(const char *name, const Tally &t) {
  put(", \"");
  put(name);
  put("\": [");
  put_number(t.cases);
  put(", ");
  put_number(t.fast);
  put(", ");
  put_number(t.mismatches);
  put("]");
}

}  // namespace

int main(void) {
  tess_platform_init();
  for (int32_t i = 0; i < TESS_KERNEL_CHECK_CASES; ++i) {
    check_currents();
    check_readout();
    check_fire();
    check_fire_blocks();
    check_traces();
    check_rescale();
    check_eligibility();
    check_dw();
    check_update();
    check_signal();
  }
  const Tally *all[] = {&currents_tally, &readout_tally, &fire_tally,  &traces_tally,
                        &rescale_tally,  &eligibility_tally, &dw_tally, &update_tally};
  uint32_t mismatches = 0;
  bool every_fast = true;
  for (const Tally *t : all) {
    mismatches += t->mismatches;
    every_fast = every_fast && t->fast > 0;
  }
  mismatches += signal_tally.mismatches;  // a fast path on Helium only
#if defined(TESS_MVE)
  every_fast = every_fast && signal_tally.fast > 0;
#endif
  put("{\"tess_kernel_check\": 1, \"path\": \"");
  put(tess_kernels_path());
  put("\"");
  put_tally("currents", currents_tally);
  put_tally("readout", readout_tally);
  put_tally("fire", fire_tally);
  put_tally("traces", traces_tally);
  put_tally("rescale", rescale_tally);
  put_tally("eligibility", eligibility_tally);
  put_tally("dw", dw_tally);
  put_tally("update", update_tally);
  put_tally("signal", signal_tally);
  put(", \"mismatches\": ");
  put_number(mismatches);
  put(", \"first_mismatch\": \"");
  put(first_mismatch);
  put("\"}\n");
  tess_platform_write(line);
  return mismatches == 0 && every_fast ? 0 : 1;
}
