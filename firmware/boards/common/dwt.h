// The DWT cycle counter of a real Cortex-M3/M4/M7/M33/M55, widened to 64
// bits in software (it wraps every 2^32 cycles, about 22 s at 192 MHz, and
// the demo reads it far more often than that).
#ifndef TESS_FIRMWARE_DWT_H_
#define TESS_FIRMWARE_DWT_H_

#include <stdint.h>

void dwt_start(void);
uint64_t dwt_cycles(void);

#endif  // TESS_FIRMWARE_DWT_H_
