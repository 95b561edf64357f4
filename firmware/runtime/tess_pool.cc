// tess_pool.cc: max pool over binary spikes (the max of 0/1 values is their OR),
// window bounds clipped once per output row and column, channels a word at a time.
#include <string.h>

#include "tess_kernels.h"

namespace {

// out[c] |= in[c], c < count.
inline void or_into(uint8_t *out, const uint8_t *in, int32_t count) {
  int32_t c = 0;
  for (; c + 4 <= count; c += 4) {
    uint32_t a, b;
    memcpy(&a, out + c, 4);
    memcpy(&b, in + c, 4);
    a |= b;
    memcpy(out + c, &a, 4);
  }
  for (; c < count; ++c) out[c] |= in[c];
}

// The window's input rows (columns) [lo, hi) inside the map.
inline void clip(int32_t o, int32_t stride, int32_t pad, int32_t size, int32_t extent, int32_t *lo, int32_t *hi) {
  const int32_t first = o * stride - pad;
  *lo = first < 0 ? 0 : first;
  *hi = first + size > extent ? extent : first + size;
}

}  // namespace

extern "C" {

void tess_pool_step(const tess_pool_t *p, const uint8_t *x, uint8_t *out) {
  for (int32_t oy = 0; oy < p->oh; ++oy) {
    int32_t y0, y1;
    clip(oy, p->sh, p->pad_top, p->ph, p->h, &y0, &y1);
    for (int32_t ox = 0; ox < p->ow; ++ox) {
      int32_t x0, x1;
      clip(ox, p->sw, p->pad_left, p->pw, p->w, &x0, &x1);
      uint8_t *o = out + (oy * p->ow + ox) * p->c;
      memset(o, 0, (size_t)p->c);
      for (int32_t iy = y0; iy < y1; ++iy) {
        for (int32_t ix = x0; ix < x1; ++ix) or_into(o, x + (iy * p->w + ix) * p->c, p->c);
      }
    }
  }
}

}  // extern "C"
