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

// The output rows (columns) a kernel tap reads for output row oy: iy = oy * stride + kh - pad.
inline int32_t input_index(int32_t o, int32_t tap, int32_t stride, int32_t pad) { return o * stride + tap - pad; }

// Spike input: channels c0 .. c0 + 4 kWords + rest of output position (oy, ox).
template <int kWords>
void gather_spikes(const Geometry &g, const int8_t *weights, const uint32_t *mask, int32_t oy, int32_t ox, int32_t c0,
                   int32_t rest, int32_t *out) {
  const int32_t words = (g.ci + 31) / 32;
  Lanes<kWords> lanes;
  int32_t tail[3] = {0, 0, 0};
  int32_t pending = 0;
  for (int32_t kh = 0; kh < g.k; ++kh) {
    const int32_t iy = input_index(oy, kh, g.stride, g.pad_top);
    if (iy < 0 || iy >= g.h) continue;
    for (int32_t kw = 0; kw < g.k; ++kw) {
      const int32_t ix = input_index(ox, kw, g.stride, g.pad_left);
      if (ix < 0 || ix >= g.w) continue;
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

// The receptive field of (oy, ox) in tap order (kh, kw, ci), as int16 pairs.
void pack_field(const Geometry &g, const int8_t *x, int32_t oy, int32_t ox, int32_t taps, uint32_t *field) {
  int16_t values[2 * kMaxPairs];
  int16_t *v = values;
  for (int32_t kh = 0; kh < g.k; ++kh) {
    const int32_t iy = input_index(oy, kh, g.stride, g.pad_top);
    for (int32_t kw = 0; kw < g.k; ++kw) {
      const int32_t ix = input_index(ox, kw, g.stride, g.pad_left);
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
        for (int32_t c = 0; c < g.ci; ++c) *v++ = 0;
        continue;
      }
      const int8_t *pixel = x + (iy * g.w + ix) * g.ci;
      for (int32_t c = 0; c < g.ci; ++c) *v++ = pixel[c];
    }
  }
  *v = 0;  // an odd last tap pairs with 0
  memcpy(field, values, (size_t)((taps + 1) / 2) * 4u);
}

void currents_packed(const Geometry &g, const int8_t *weights, const int8_t *x, int16_t *packed, int32_t *acc) {
  const int32_t taps = g.k * g.k * g.ci, pairs = (taps + 1) / 2;
  pack_weights(g, weights, taps, pairs, packed);
  uint32_t field[kMaxPairs];
  for (int32_t oy = 0; oy < g.oh; ++oy) {
    for (int32_t ox = 0; ox < g.ow; ++ox) {
      pack_field(g, x, oy, ox, taps, field);
      int32_t *out = acc + (oy * g.ow + ox) * g.co;
      int32_t c = 0;
      for (; c + 4 <= g.co; c += 4) {  // four channels share each field pair
        const int16_t *w0 = packed + c * 2 * pairs;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int32_t j = 0; j < pairs; ++j) {
          const uint32_t f = field[j];
          a0 = tess_smlad(f, tess_load32(reinterpret_cast<const int8_t *>(w0 + 2 * j)), a0);
          a1 = tess_smlad(f, tess_load32(reinterpret_cast<const int8_t *>(w0 + 2 * (pairs + j))), a1);
          a2 = tess_smlad(f, tess_load32(reinterpret_cast<const int8_t *>(w0 + 2 * (2 * pairs + j))), a2);
          a3 = tess_smlad(f, tess_load32(reinterpret_cast<const int8_t *>(w0 + 2 * (3 * pairs + j))), a3);
        }
        out[c] = a0;
        out[c + 1] = a1;
        out[c + 2] = a2;
        out[c + 3] = a3;
      }
      for (; c < g.co; ++c) {
        const int16_t *w = packed + c * 2 * pairs;
        int32_t a = 0;
        for (int32_t j = 0; j < pairs; ++j) a = tess_smlad(field[j], tess_load32(reinterpret_cast<const int8_t *>(w + 2 * j)), a);
        out[c] = a;
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
