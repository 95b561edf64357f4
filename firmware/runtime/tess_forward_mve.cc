// tess_forward_mve.cc: the synaptic currents on Helium (MVE, Cortex-M55),
// bit-exact with the reference scatter of tess_spiking.cc; tess_forward_fast.cc
// calls it for every input (conv, dense and the readout) of an MVE build.
// int8 inputs (the first layer): 16 channels as four int32x4 sums, VMLA by
// each non-zero input value.
//
// Output-stationary like the DSP path: for each output position and block of
// up to 32 channels, four int16x8 sums stay in Q registers while the kernel
// walks the taps. The spikes become bit masks (VCMP on 16 bytes gives one
// predicate bit a byte), each active input adds its int8 weight row widened
// to int16 (VLDRB.S16, eight channels a load), and the int16 lanes go to the
// int32 sums before 256 rows can have been added (255 * 128 < 2^15).
#include "tess_fast.h"

#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>

namespace {

constexpr int32_t kMaxPendingRows = 255;

inline int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }

// Bit c of mask word j of a pixel: input channel 32 j + c is non-zero.
void pack_mask(const tess_conv_shape_t &g, const uint8_t *x, uint32_t *mask) {
  const int32_t words = (g.ci + 31) / 32;
  for (int32_t p = 0; p < g.h * g.w; ++p) {
    const uint8_t *pixel = x + p * g.ci;
    for (int32_t j = 0; j < words; ++j) {
      const int32_t count = min32(g.ci - 32 * j, 32);
      const uint8x16_t low = vldrbq_z_u8(pixel + 32 * j, vctp8q((uint32_t)count));
      uint32_t bits = vcmpneq_n_u8(low, 0);
      if (count > 16) {
        const uint8x16_t high = vldrbq_z_u8(pixel + 32 * j + 16, vctp8q((uint32_t)(count - 16)));
        bits |= (uint32_t)vcmpneq_n_u8(high, 0) << 16;
      }
      mask[p * words + j] = bits;
    }
  }
}

// The kernel taps [lo, hi) of output o that land inside an input of size n.
inline void tap_range(int32_t o, int32_t stride, int32_t pad, int32_t k, int32_t n, int32_t *lo, int32_t *hi) {
  const int32_t first = o * stride - pad;
  *lo = first < 0 ? -first : 0;
  *hi = first + k > n ? n - first : k;
}

// kVectors int16x8 sums (8 kVectors channels, the last one `tail` lanes wide when kTail).
template <int kVectors, bool kTail>
struct Sums {
  int16x8_t a[kVectors];
  mve_pred16_t last;

  explicit Sums(int32_t tail) : last(vctp16q((uint32_t)tail)) {
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) a[v] = vdupq_n_s16(0);
  }
  void add(const int8_t *w) {
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      const int16x8_t row = kTail && v == kVectors - 1 ? vldrbq_z_s16(w + 8 * v, last) : vldrbq_s16(w + 8 * v);
      a[v] = vaddq_s16(a[v], row);
    }
  }
  // out[0 .. count) = (add: out +) the int16 lanes, widened through a stack copy (VLDRH.S32 keeps the
  // lane order); whole vectors of four without predication.
  void flush(int32_t *out, int32_t count, bool add) {
    int16_t lanes[8 * kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      vstrhq_s16(lanes + 8 * v, a[v]);
      a[v] = vdupq_n_s16(0);
    }
    int32_t i = 0;
    if (add) {
      for (; i + 4 <= count; i += 4) vstrwq_s32(out + i, vaddq_s32(vldrwq_s32(out + i), vldrhq_s32(lanes + i)));
    } else {
      for (; i + 4 <= count; i += 4) vstrwq_s32(out + i, vldrhq_s32(lanes + i));
    }
    if (i < count) {
      const mve_pred16_t p = vctp32q((uint32_t)(count - i));
      const int32x4_t sum = vldrhq_z_s32(lanes + i, p);
      vstrwq_p_s32(out + i, add ? vaddq_s32(vldrwq_z_s32(out + i, p), sum) : sum, p);
    }
  }
};

// Channels c0 .. c0 + count of output position (oy, ox), count <= 8 kVectors.
template <int kVectors, bool kTail>
void gather(const tess_conv_shape_t &g, const int8_t *weights, const uint32_t *mask, int32_t oy, int32_t ox, int32_t c0,
            int32_t count, int32_t *out) {
  const int32_t words = (g.ci + 31) / 32;
  Sums<kVectors, kTail> sums(count - 8 * (kVectors - 1));
  int32_t pending = 0;
  bool flushed = false;  // the first flush stores: out needs no clearing
  int32_t kh0, kh1, kw0, kw1;
  tap_range(oy, g.stride, g.pad_top, g.k, g.h, &kh0, &kh1);
  tap_range(ox, g.stride, g.pad_left, g.k, g.w, &kw0, &kw1);
  for (int32_t kh = kh0; kh < kh1; ++kh) {
    const int32_t iy = oy * g.stride + kh - g.pad_top;
    for (int32_t kw = kw0; kw < kw1; ++kw) {
      const int32_t ix = ox * g.stride + kw - g.pad_left;
      const int8_t *tap = weights + (kh * g.k + kw) * g.ci * g.co + c0;
      const uint32_t *m = mask + (iy * g.w + ix) * words;
      for (int32_t j = 0; j < words; ++j) {
        uint32_t bits = m[j];
        if (bits == 0) continue;
        const int32_t rows = min32(g.ci - 32 * j, 32);
        if (pending + rows > kMaxPendingRows) {
          sums.flush(out, count, flushed);
          flushed = true;
          pending = 0;
        }
        pending += rows;
        // From the top of the reversed bits: the leading zeros are the distance to the next row.
        uint32_t rest;
        __asm__("rbit %0, %1" : "=r"(rest) : "r"(bits));
        const int8_t *w = tap + 32 * j * g.co;
        do {
          const int32_t skip = __builtin_clz(rest);
          rest <<= skip;
          w += skip * g.co;
          sums.add(w);
          rest <<= 1;
          w += g.co;
        } while (rest != 0);
      }
    }
  }
  sums.flush(out, count, flushed);
}

// Every output position for channels c0 .. c0 + count (the block's shape chosen once).
template <int kVectors>
void gather_all(const tess_conv_shape_t &g, const int8_t *weights, const uint32_t *mask, int32_t c0, int32_t count,
                int32_t *acc) {
  for (int32_t oy = 0; oy < g.oh; ++oy) {
    for (int32_t ox = 0; ox < g.ow; ++ox) {
      int32_t *out = acc + (oy * g.ow + ox) * g.co + c0;
      if (count % 8 == 0) {
        gather<kVectors, false>(g, weights, mask, oy, ox, c0, count, out);
      } else {
        gather<kVectors, true>(g, weights, mask, oy, ox, c0, count, out);
      }
    }
  }
}

// int8 input: channels c0 .. c0 + count (count <= 4 kVectors) of output position (oy, ox) as int32x4
// sums, each non-zero input adding its weight row (VLDRB.S32) times its value (VMLA).
template <int kVectors, bool kTail>
void gather_values(const tess_conv_shape_t &g, const int8_t *weights, const int8_t *x, int32_t oy, int32_t ox,
                   int32_t c0, int32_t count, int32_t *out) {
  const mve_pred16_t last = vctp32q((uint32_t)(count - 4 * (kVectors - 1)));
  int32x4_t a[kVectors];
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) a[v] = vdupq_n_s32(0);
  int32_t kh0, kh1, kw0, kw1;
  tap_range(oy, g.stride, g.pad_top, g.k, g.h, &kh0, &kh1);
  tap_range(ox, g.stride, g.pad_left, g.k, g.w, &kw0, &kw1);
  // The taps of one kernel row that land on the map are one run of the HWC input and of the weights.
  const int32_t run = (kw1 - kw0) * g.ci;
  for (int32_t kh = kh0; kh < kh1 && run > 0; ++kh) {
    const int32_t iy = oy * g.stride + kh - g.pad_top, ix = ox * g.stride + kw0 - g.pad_left;
    const int8_t *in = x + (iy * g.w + ix) * g.ci;
    const int8_t *w = weights + (kh * g.k + kw0) * g.ci * g.co + c0;
    for (int32_t t = 0; t < run; ++t, w += g.co) {
      const int32_t value = in[t];
      if (value == 0) continue;
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) {
        const int32x4_t row = kTail && v == kVectors - 1 ? vldrbq_z_s32(w + 4 * v, last) : vldrbq_s32(w + 4 * v);
        a[v] = vmlaq_n_s32(a[v], row, value);
      }
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) {
    if (kTail && v == kVectors - 1) {
      vstrwq_p_s32(out + 4 * v, a[v], last);
    } else {
      vstrwq_s32(out + 4 * v, a[v]);
    }
  }
}

template <int kVectors>
void gather_values_all(const tess_conv_shape_t &g, const int8_t *weights, const int8_t *x, int32_t c0, int32_t count,
                       int32_t *acc) {
  for (int32_t oy = 0; oy < g.oh; ++oy) {
    for (int32_t ox = 0; ox < g.ow; ++ox) {
      int32_t *out = acc + (oy * g.ow + ox) * g.co + c0;
      if (count % 4 == 0) {
        gather_values<kVectors, false>(g, weights, x, oy, ox, c0, count, out);
      } else {
        gather_values<kVectors, true>(g, weights, x, oy, ox, c0, count, out);
      }
    }
  }
}

}  // namespace

extern "C" {

int32_t tess_mve_spike_currents(const tess_conv_shape_t *shape, const int8_t *weights, const uint8_t *x,
                                uint32_t *mask, int32_t *acc) {
  const tess_conv_shape_t &g = *shape;
  pack_mask(g, x, mask);
  for (int32_t c0 = 0; c0 < g.co; c0 += 32) {
    const int32_t count = min32(g.co - c0, 32);
    switch ((count + 7) / 8) {
      case 4: gather_all<4>(g, weights, mask, c0, count, acc); break;
      case 3: gather_all<3>(g, weights, mask, c0, count, acc); break;
      case 2: gather_all<2>(g, weights, mask, c0, count, acc); break;
      default: gather_all<1>(g, weights, mask, c0, count, acc); break;
    }
  }
  return 1;
}

int32_t tess_mve_value_currents(const tess_conv_shape_t *shape, const int8_t *weights, const int8_t *x, int32_t *acc) {
  const tess_conv_shape_t &g = *shape;
  for (int32_t c0 = 0; c0 < g.co; c0 += 16) {
    const int32_t count = min32(g.co - c0, 16);
    switch ((count + 3) / 4) {
      case 4: gather_values_all<4>(g, weights, x, c0, count, acc); break;
      case 3: gather_values_all<3>(g, weights, x, c0, count, acc); break;
      case 2: gather_values_all<2>(g, weights, x, c0, count, acc); break;
      default: gather_values_all<1>(g, weights, x, c0, count, acc); break;
    }
  }
  return 1;
}

}  // extern "C"

#else

extern "C" {

int32_t tess_mve_spike_currents(const tess_conv_shape_t *, const int8_t *, const uint8_t *, uint32_t *, int32_t *) {
  return 0;
}

int32_t tess_mve_value_currents(const tess_conv_shape_t *, const int8_t *, const int8_t *, int32_t *) { return 0; }

}  // extern "C"

#endif
