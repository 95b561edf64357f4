// tess_pool.cc: max pool over binary spikes (the max of 0/1 values is their OR),
// window bounds clipped once per output row and column, four channels a word ORed in a register.
#include <string.h>

#include "tess_kernels.h"
#include "tess_simd.h"

#if defined(TESS_MVE)
#include <arm_mve.h>
#endif

namespace {

inline uint32_t load_word(const uint8_t *p) {
  uint32_t word;
  memcpy(&word, p, 4);
  return word;
}

// The window's input rows (columns) [lo, hi) inside the map.
inline void clip(int32_t o, int32_t stride, int32_t pad, int32_t size, int32_t extent, int32_t *lo, int32_t *hi) {
  const int32_t first = o * stride - pad;
  *lo = first < 0 ? 0 : first;
  *hi = first + size > extent ? extent : first + size;
}

#if defined(TESS_MVE)
// Helium: sixteen channels a vector (the last one predicated).
void pool_at(const tess_pool_t *p, const uint8_t *x, int32_t y0, int32_t y1, int32_t x0, int32_t x1, uint8_t *out) {
  const int32_t row = p->w * p->c;
  const uint8_t *corner = x + (y0 * p->w + x0) * p->c;
  for (int32_t c = 0; c < p->c; c += 16) {
    const mve_pred16_t lanes = vctp8q((uint32_t)(p->c - c));
    uint8x16_t bits = vdupq_n_u8(0);
    for (int32_t iy = y0; iy < y1; ++iy) {
      const uint8_t *in = corner + (iy - y0) * row + c;
      for (int32_t ix = x0; ix < x1; ++ix, in += p->c) bits = vorrq_u8(bits, vldrbq_z_u8(in, lanes));
    }
    vstrbq_p_u8(out + c, bits, lanes);
  }
}
#else
// out[c] = OR of the window's pixels at channel c: four channels a word, ORed in a register.
void pool_at(const tess_pool_t *p, const uint8_t *x, int32_t y0, int32_t y1, int32_t x0, int32_t x1, uint8_t *out) {
  const int32_t row = p->w * p->c;
  const uint8_t *corner = x + (y0 * p->w + x0) * p->c;
  int32_t c = 0;
  for (; c + 4 <= p->c; c += 4) {
    uint32_t word = 0;
    for (int32_t iy = y0; iy < y1; ++iy) {
      const uint8_t *in = corner + (iy - y0) * row + c;
      for (int32_t ix = x0; ix < x1; ++ix, in += p->c) word |= load_word(in);
    }
    memcpy(out + c, &word, 4);
  }
  for (; c < p->c; ++c) {
    uint8_t bit = 0;
    for (int32_t iy = y0; iy < y1; ++iy) {
      for (int32_t ix = x0; ix < x1; ++ix) bit |= corner[(iy - y0) * row + (ix - x0) * p->c + c];
    }
    out[c] = bit;
  }
}
#endif

}  // namespace

extern "C" {

void tess_pool_step(const tess_pool_t *p, const uint8_t *x, uint8_t *out) {
  for (int32_t oy = 0; oy < p->oh; ++oy) {
    int32_t y0, y1;
    clip(oy, p->sh, p->pad_top, p->ph, p->h, &y0, &y1);
    for (int32_t ox = 0; ox < p->ow; ++ox) {
      int32_t x0, x1;
      clip(ox, p->sw, p->pad_left, p->pw, p->w, &x0, &x1);
      pool_at(p, x, y0, y1, x0, x1, out + (oy * p->ow + ox) * p->c);
    }
  }
}

}  // extern "C"
