// tess_forward_fast.cc: the synaptic currents of a layer on the DSP fast path
// (tess_simd.h), bit-exact with the reference scatter of tess_spiking.cc.
//
// Output-stationary: for each output position and block of up to 16 channels
// the sums stay in registers while the kernel walks the taps. Binary spikes
// are first packed into bit masks (32 channels a word), so only active inputs
// cost work, and each adds its int8 weight row to int16 lanes with SXTAB16
// (two channels an instruction); the lanes go to the int32 sums before 256
// rows can have been added, so no int16 lane can overflow (|w| <= 128).
// int8 inputs (the first layer) multiply with SMLAD, two taps an instruction,
// or, for receptive fields over 512 taps, with SMLABB/SMLATB into int32.
#include "tess_fast.h"

#include "tess_simd.h"

#if defined(TESS_FAST)

namespace {

// A dense layer is a 1x1 convolution on a 1x1 map with nin channels.
struct Geometry {
  int32_t h, w, ci, oh, ow, co, k, stride, pad_top, pad_left;
};

Geometry geometry_of(const tess_spiking_t *layer) {
  if (layer->kind == TESS_LAYER_CONV) {
    const tess_conv_shape_t &s = layer->conv;
    return {s.h, s.w, s.ci, s.oh, s.ow, s.co, s.k, s.stride, s.pad_top, s.pad_left};
  }
  return {1, 1, layer->nin, 1, 1, layer->co, 1, 1, 0, 0};
}

constexpr int32_t kMaxPendingRows = 255;  // 255 * 128 < 2^15

// Bit c of mask word j of a pixel: input channel 32 j + c is non-zero.
void pack_mask(const Geometry &g, const int8_t *x, uint32_t *mask) {
  const int32_t words = (g.ci + 31) / 32;
  for (int32_t p = 0; p < g.h * g.w; ++p) {
    const int8_t *pixel = x + p * g.ci;
    for (int32_t j = 0; j < words; ++j) {
      const int32_t first = 32 * j, count = g.ci - first < 32 ? g.ci - first : 32;
      uint32_t bits = 0;
      int32_t c = 0;
      for (; c + 4 <= count; c += 4) {
        const uint32_t word = tess_load32(pixel + first + c);
        // high bit of each non-zero byte, then the four bits gathered by one multiply
        const uint32_t nonzero = (((word & 0x7F7F7F7Fu) + 0x7F7F7F7Fu) | word) & 0x80808080u;
        bits |= (((nonzero >> 7) * 0x01020408u) >> 24) << c;
      }
      for (; c < count; ++c) bits |= (pixel[first + c] != 0 ? 1u : 0u) << c;
      mask[p * words + j] = bits;
    }
  }
}

// 4 * kWords channels as int16 lanes: word 2q holds channels 4q and 4q+2, word 2q+1 channels 4q+1 and 4q+3.
template <int kWords>
struct Lanes {
  uint32_t a[kWords > 0 ? 2 * kWords : 1] = {};

  // Adds the row at first + i * stride for every set bit i of bits (non-zero).
  void add_rows(uint32_t bits, const int8_t *first, int32_t stride) {
    while (bits != 0) {
      add(first + __builtin_ctz(bits) * stride);
      bits &= bits - 1;
    }
  }
  void add(const int8_t *w) {
#pragma GCC unroll 4
    for (int q = 0; q < kWords; ++q) {
      const uint32_t word = tess_load32(w + 4 * q);
      a[2 * q] = tess_sxtab16(a[2 * q], word);
      a[2 * q + 1] = tess_sxtab16_ror8(a[2 * q + 1], word);
    }
  }
  void flush(int32_t *out) {
#pragma GCC unroll 4
    for (int q = 0; q < kWords; ++q) {
      out[4 * q] += (int16_t)(a[2 * q] & 0xFFFFu);
      out[4 * q + 2] += (int16_t)(a[2 * q] >> 16);
      out[4 * q + 1] += (int16_t)(a[2 * q + 1] & 0xFFFFu);
      out[4 * q + 3] += (int16_t)(a[2 * q + 1] >> 16);
      a[2 * q] = a[2 * q + 1] = 0;
    }
  }
};

#if !defined(TESS_KERNELS_EMULATE_DSP)
// 16 channels: GCC spills some of the eight lanes in the loop above, so on the
// real DSP it is written out, 18 instructions a row. The bits are walked from
// the top of their reverse: the leading zeros are the distance to the next row.
template <>
inline void Lanes<4>::add_rows(uint32_t bits, const int8_t *first, int32_t stride) {
  // Pinned registers (r7 left to a frame pointer): GCC's allocator finds no twelve on its own on every core.
  register uint32_t a0 __asm__("r0") = a[0], a1 __asm__("r1") = a[1], a2 __asm__("r2") = a[2], a3 __asm__("r3") = a[3];
  register uint32_t a4 __asm__("r8") = a[4], a5 __asm__("r9") = a[5], a6 __asm__("r10") = a[6], a7 __asm__("r11") = a[7];
  register uint32_t rest __asm__("r4") = bits, word __asm__("r5");
  register const int8_t *w __asm__("r6") = first;
  register int32_t row_stride __asm__("r12") = stride;
  __asm__(
      "rbit %[rest], %[rest]\n"
      "1:\n\t"
      "clz %[word], %[rest]\n\t"
      "lsl %[rest], %[rest], %[word]\n\t"
      "mla %[w], %[word], %[stride], %[w]\n\t"
      "ldr %[word], [%[w]]\n\t"
      "sxtab16 %[a0], %[a0], %[word]\n\t"
      "sxtab16 %[a1], %[a1], %[word], ror #8\n\t"
      "ldr %[word], [%[w], #4]\n\t"
      "sxtab16 %[a2], %[a2], %[word]\n\t"
      "sxtab16 %[a3], %[a3], %[word], ror #8\n\t"
      "ldr %[word], [%[w], #8]\n\t"
      "sxtab16 %[a4], %[a4], %[word]\n\t"
      "sxtab16 %[a5], %[a5], %[word], ror #8\n\t"
      "ldr %[word], [%[w], #12]\n\t"
      "sxtab16 %[a6], %[a6], %[word]\n\t"
      "sxtab16 %[a7], %[a7], %[word], ror #8\n\t"
      "lsls %[rest], %[rest], #1\n\t"
      "add %[w], %[w], %[stride]\n\t"
      "bne 1b"
      : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4), [a5] "+r"(a5), [a6] "+r"(a6),
        [a7] "+r"(a7), [rest] "+r"(rest), [w] "+r"(w), [word] "=&r"(word)
      : [stride] "r"(row_stride)
      : "cc", "memory");
  a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3; a[4] = a4; a[5] = a5; a[6] = a6; a[7] = a7;
}
#endif

// The output rows (columns) a kernel tap reads for output row oy: iy = oy * stride + kh - pad.
inline int32_t input_index(int32_t o, int32_t tap, int32_t stride, int32_t pad) { return o * stride + tap - pad; }

// The kernel taps [lo, hi) of output o that land inside an input of size n.
inline void tap_range(int32_t o, int32_t stride, int32_t pad, int32_t k, int32_t n, int32_t *lo, int32_t *hi) {
  const int32_t first = o * stride - pad;
  *lo = first < 0 ? -first : 0;
  *hi = first + k > n ? n - first : k;
}

// Spike input: channels c0 .. c0 + 4 kWords + rest of output position (oy, ox). Not inlined: the
// caller's values stay out of the registers the row loop needs.
template <int kWords>
__attribute__((noinline)) void gather_spikes(const Geometry &g, const int8_t *weights, const uint32_t *mask, int32_t oy, int32_t ox, int32_t c0,
                   int32_t rest, int32_t *out) {
  const int32_t words = (g.ci + 31) / 32;
  Lanes<kWords> lanes;
  int32_t tail[3] = {0, 0, 0};
  int32_t pending = 0;
  int32_t kh0, kh1, kw0, kw1;
  tap_range(oy, g.stride, g.pad_top, g.k, g.h, &kh0, &kh1);
  tap_range(ox, g.stride, g.pad_left, g.k, g.w, &kw0, &kw1);
  for (int32_t kh = kh0; kh < kh1; ++kh) {
    const int32_t iy = input_index(oy, kh, g.stride, g.pad_top);
    for (int32_t kw = kw0; kw < kw1; ++kw) {
      const int32_t ix = input_index(ox, kw, g.stride, g.pad_left);
      const int8_t *tap = weights + (kh * g.k + kw) * g.ci * g.co + c0;
      const uint32_t *m = mask + (iy * g.w + ix) * words;
      for (int32_t j = 0; j < words; ++j) {
        uint32_t bits = m[j];
        if (bits == 0) continue;
        const int32_t rows = g.ci - 32 * j < 32 ? g.ci - 32 * j : 32;
        if (pending + rows > kMaxPendingRows) {
          lanes.flush(out);
          pending = 0;
        }
        pending += rows;
        const int8_t *first = tap + 32 * j * g.co;
        if (rest == 0) {
          lanes.add_rows(bits, first, g.co);
          continue;
        }
        while (bits != 0) {
          const int8_t *w = first + __builtin_ctz(bits) * g.co;
          bits &= bits - 1;
          lanes.add(w);
          for (int32_t r = 0; r < rest; ++r) tail[r] += w[4 * kWords + r];
        }
      }
    }
  }
  lanes.flush(out);
  for (int32_t r = 0; r < rest; ++r) out[4 * kWords + r] += tail[r];
}

// int8 input: the same walk over the non-zero inputs, multiplying into int32 sums
// (channels c0 .. c0 + 4 kWords in registers, the rest, if any, beside them).
template <int kWords>
void gather_values(const Geometry &g, const int8_t *weights, const int8_t *x, int32_t oy, int32_t ox, int32_t c0,
                   int32_t rest, int32_t *out) {
  int32_t a[kWords > 0 ? 4 * kWords : 1] = {};
  int32_t tail[3] = {0, 0, 0};
  for (int32_t kh = 0; kh < g.k; ++kh) {
    const int32_t iy = input_index(oy, kh, g.stride, g.pad_top);
    if (iy < 0 || iy >= g.h) continue;
    for (int32_t kw = 0; kw < g.k; ++kw) {
      const int32_t ix = input_index(ox, kw, g.stride, g.pad_left);
      if (ix < 0 || ix >= g.w) continue;
      const int8_t *tap = weights + (kh * g.k + kw) * g.ci * g.co + c0;
      const int8_t *pixel = x + (iy * g.w + ix) * g.ci;
      for (int32_t c = 0; c < g.ci; ++c) {
        const int32_t value = pixel[c];
        if (value == 0) continue;
        const int8_t *w = tap + c * g.co;
#pragma GCC unroll 4
        for (int q = 0; q < kWords; ++q) {
          const uint32_t word = tess_load32(w + 4 * q);
          const uint32_t even = tess_sxtb16(word), odd = tess_sxtb16_ror8(word);
          a[4 * q] = tess_smlabb(even, value, a[4 * q]);
          a[4 * q + 2] = tess_smlatb(even, value, a[4 * q + 2]);
          a[4 * q + 1] = tess_smlabb(odd, value, a[4 * q + 1]);
          a[4 * q + 3] = tess_smlatb(odd, value, a[4 * q + 3]);
        }
        for (int32_t r = 0; r < rest; ++r) tail[r] += value * w[4 * kWords + r];
      }
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < 4 * kWords; ++i) out[i] = a[i];
  for (int32_t r = 0; r < rest; ++r) out[4 * kWords + r] = tail[r];
}

// ---- int8 input as int16 pairs: SMLAD, two taps an instruction ----
// The receptive field of an output position (zero outside the map) and the
// weights, transposed to [channel][tap] (repacked every step: learning moves
// them), as pairs of int16: each output is sum_j SMLAD(x pair j, w pair j).
constexpr int32_t kMaxPairs = 256;

// Packs the weights [tap][co] as int16 [co][2 * pairs] (an odd last tap pairs with 0).
void pack_weights(const Geometry &g, const int8_t *weights, int32_t taps, int32_t pairs, int16_t *packed) {
  for (int32_t c = 0; c < g.co; ++c) {
    int16_t *row = packed + c * 2 * pairs;
    for (int32_t t = 0; t < taps; ++t) row[t] = weights[t * g.co + c];
    if (taps % 2 != 0) row[taps] = 0;
  }
}

// The receptive field of (oy, ox) in tap order (kh, kw, ci) as int16, an odd last tap paired with 0.
// The taps of one kernel row that land on the map are one run of the HWC input.
void pack_field(const Geometry &g, const int8_t *x, int32_t oy, int32_t ox, int16_t *values) {
  int32_t kh0, kh1, kw0, kw1;
  tap_range(oy, g.stride, g.pad_top, g.k, g.h, &kh0, &kh1);
  tap_range(ox, g.stride, g.pad_left, g.k, g.w, &kw0, &kw1);
  const int32_t before = kw0 * g.ci, run = (kw1 - kw0) * g.ci, after = (g.k - kw1) * g.ci;
  int16_t *v = values;
  for (int32_t kh = 0; kh < g.k; ++kh) {
    if (kh < kh0 || kh >= kh1 || run <= 0) {
      for (int32_t c = 0; c < g.k * g.ci; ++c) *v++ = 0;
      continue;
    }
    const int8_t *in = x + (input_index(oy, kh, g.stride, g.pad_top) * g.w + input_index(ox, kw0, g.stride, g.pad_left)) * g.ci;
    for (int32_t c = 0; c < before; ++c) *v++ = 0;
    for (int32_t c = 0; c < run; ++c) *v++ = in[c];
    for (int32_t c = 0; c < after; ++c) *v++ = 0;
  }
  *v = 0;
}

// Small fields (kPairs <= 8 pairs) stay in registers: each channel is kPairs loads and SMLADs.
template <int kPairs>
void dot_small(const int16_t *values, const int16_t *packed, int32_t co, int32_t *out) {
  uint32_t f[kPairs];
#pragma GCC unroll 8
  for (int j = 0; j < kPairs; ++j) f[j] = tess_load32(reinterpret_cast<const int8_t *>(values + 2 * j));
  const int8_t *w = reinterpret_cast<const int8_t *>(packed);
  int32_t c = 0;
  for (; c + 2 <= co; c += 2, w += 8 * kPairs) {
    int32_t a = 0, b = 0;
#pragma GCC unroll 8
    for (int j = 0; j < kPairs; ++j) {
      a = tess_smlad(f[j], tess_load32(w + 4 * j), a);
      b = tess_smlad(f[j], tess_load32(w + 4 * (kPairs + j)), b);
    }
    out[c] = a;
    out[c + 1] = b;
  }
  if (c < co) {
    int32_t a = 0;
#pragma GCC unroll 8
    for (int j = 0; j < kPairs; ++j) a = tess_smlad(f[j], tess_load32(w + 4 * j), a);
    out[c] = a;
  }
}

// Larger fields: four channels share each field pair.
void dot_large(const int16_t *values, const int16_t *packed, int32_t pairs, int32_t co, int32_t *out) {
  const int8_t *field = reinterpret_cast<const int8_t *>(values);
  int32_t c = 0;
  for (; c + 4 <= co; c += 4) {
    const int8_t *w0 = reinterpret_cast<const int8_t *>(packed + c * 2 * pairs);
    const int8_t *w1 = w0 + 4 * pairs, *w2 = w1 + 4 * pairs, *w3 = w2 + 4 * pairs;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int32_t j = 0; j < pairs; ++j) {
      const uint32_t f = tess_load32(field + 4 * j);
      a0 = tess_smlad(f, tess_load32(w0 + 4 * j), a0);
      a1 = tess_smlad(f, tess_load32(w1 + 4 * j), a1);
      a2 = tess_smlad(f, tess_load32(w2 + 4 * j), a2);
      a3 = tess_smlad(f, tess_load32(w3 + 4 * j), a3);
    }
    out[c] = a0;
    out[c + 1] = a1;
    out[c + 2] = a2;
    out[c + 3] = a3;
  }
  for (; c < co; ++c) {
    const int8_t *w = reinterpret_cast<const int8_t *>(packed + c * 2 * pairs);
    int32_t a = 0;
    for (int32_t j = 0; j < pairs; ++j) a = tess_smlad(tess_load32(field + 4 * j), tess_load32(w + 4 * j), a);
    out[c] = a;
  }
}

void currents_packed(const Geometry &g, const int8_t *weights, const int8_t *x, int16_t *packed, int32_t *acc) {
  const int32_t taps = g.k * g.k * g.ci, pairs = (taps + 1) / 2;
  pack_weights(g, weights, taps, pairs, packed);
  int16_t values[2 * kMaxPairs];
  for (int32_t oy = 0; oy < g.oh; ++oy) {
    for (int32_t ox = 0; ox < g.ow; ++ox) {
      pack_field(g, x, oy, ox, values);
      int32_t *out = acc + (oy * g.ow + ox) * g.co;
      switch (pairs) {
        case 1: dot_small<1>(values, packed, g.co, out); break;
        case 2: dot_small<2>(values, packed, g.co, out); break;
        case 3: dot_small<3>(values, packed, g.co, out); break;
        case 4: dot_small<4>(values, packed, g.co, out); break;
        case 5: dot_small<5>(values, packed, g.co, out); break;
        case 6: dot_small<6>(values, packed, g.co, out); break;
        case 7: dot_small<7>(values, packed, g.co, out); break;
        case 8: dot_small<8>(values, packed, g.co, out); break;
        default: dot_large(values, packed, pairs, g.co, out); break;
      }
    }
  }
}

// Channel blocks of one output position: 16 (spikes) or 8 (values) at a time, then the rest.
void currents_at(const Geometry &g, const int8_t *weights, const int8_t *x, const uint32_t *mask, int32_t oy,
                 int32_t ox, int32_t *out) {
  int32_t c0 = 0;
  if (mask != nullptr) {
    for (; c0 + 16 <= g.co; c0 += 16) gather_spikes<4>(g, weights, mask, oy, ox, c0, 0, out + c0);
    const int32_t left = g.co - c0, rest = left % 4;
    switch (left / 4) {
      case 3: gather_spikes<3>(g, weights, mask, oy, ox, c0, rest, out + c0); break;
      case 2: gather_spikes<2>(g, weights, mask, oy, ox, c0, rest, out + c0); break;
      case 1: gather_spikes<1>(g, weights, mask, oy, ox, c0, rest, out + c0); break;
      default: if (rest > 0) gather_spikes<0>(g, weights, mask, oy, ox, c0, rest, out + c0); break;
    }
    return;
  }
  for (; c0 + 8 <= g.co; c0 += 8) gather_values<2>(g, weights, x, oy, ox, c0, 0, out + c0);
  const int32_t left = g.co - c0, rest = left % 4;
  if (left >= 4) {
    gather_values<1>(g, weights, x, oy, ox, c0, rest, out + c0);
  } else if (rest > 0) {
    gather_values<0>(g, weights, x, oy, ox, c0, rest, out + c0);
  }
}

void currents(const Geometry &g, const int8_t *weights, const int8_t *x, bool spikes, uint32_t *mask,
              int32_t *acc) {
#if defined(TESS_MVE)
  if (spikes) {  // Helium
    const tess_conv_shape_t shape = {g.h, g.w, g.ci, g.oh, g.ow, g.co, g.k, g.stride, g.pad_top, g.pad_left};
    tess_mve_spike_currents(&shape, weights, reinterpret_cast<const uint8_t *>(x), mask, acc);
    return;
  }
#endif
  if (spikes) {
    pack_mask(g, x, mask);
    for (int32_t n = 0; n < g.oh * g.ow * g.co; ++n) acc[n] = 0;  // the lanes add into it
  }
  for (int32_t oy = 0; oy < g.oh; ++oy) {
    for (int32_t ox = 0; ox < g.ow; ++ox) {
      currents_at(g, weights, x, spikes ? mask : nullptr, oy, ox, acc + (oy * g.ow + ox) * g.co);
    }
  }
}

}  // namespace

extern "C" {

int32_t tess_fast_currents(const tess_spiking_t *layer, const int8_t *weights, const int8_t *x, int32_t *acc,
                           uint32_t *mask, int16_t *packed) {
  const Geometry g = geometry_of(layer);
#if defined(TESS_MVE)
  if (layer->analog) {  // Helium
    const tess_conv_shape_t shape = {g.h, g.w, g.ci, g.oh, g.ow, g.co, g.k, g.stride, g.pad_top, g.pad_left};
    return tess_mve_value_currents(&shape, weights, x, acc);
  }
#endif
  if (layer->analog && packed != nullptr && (g.k * g.k * g.ci + 1) / 2 <= kMaxPairs) {
    currents_packed(g, weights, x, packed, acc);
  } else {
    currents(g, weights, x, !layer->analog, mask, acc);
  }
  return 1;
}

int32_t tess_fast_readout(const tess_readout_t *readout, const int8_t *weights, const uint8_t *x, int32_t *acc,
                          uint32_t *mask) {
  const Geometry g = {1, 1, readout->nin, 1, 1, readout->classes, 1, 1, 0, 0};
  currents(g, weights, reinterpret_cast<const int8_t *>(x), true, mask, acc);
  return 1;
}

}  // extern "C"

#else  // the reference build: the kernels take their reference loops

extern "C" {

int32_t tess_fast_currents(const tess_spiking_t *, const int8_t *, const int8_t *, int32_t *, uint32_t *, int16_t *) {
  return 0;
}

int32_t tess_fast_readout(const tess_readout_t *, const int8_t *, const uint8_t *, int32_t *, uint32_t *) { return 0; }

}  // extern "C"

#endif
