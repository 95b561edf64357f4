// tess_pool.cc: max pool over binary spikes (the max of 0/1 values is their OR).
#include "tess_kernels.h"

extern "C" {

void tess_pool_step(const tess_pool_t *p, const uint8_t *x, uint8_t *out) {
  for (int32_t oy = 0; oy < p->oh; ++oy) {
    for (int32_t ox = 0; ox < p->ow; ++ox) {
      for (int32_t c = 0; c < p->c; ++c) {
        uint8_t value = 0;
        for (int32_t i = 0; i < p->ph; ++i) {
          const int32_t iy = oy * p->sh + i - p->pad_top;
          if (iy < 0 || iy >= p->h) continue;
          for (int32_t j = 0; j < p->pw; ++j) {
            const int32_t ix = ox * p->sw + j - p->pad_left;
            if (ix < 0 || ix >= p->w) continue;
            value |= x[(iy * p->w + ix) * p->c + c];
          }
        }
        out[(oy * p->ow + ox) * p->c + c] = value;
      }
    }
  }
}

}  // extern "C"
