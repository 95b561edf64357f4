// What the demo application needs from a board: a console, a clock, an exit.
// Each board (QEMU semihosting, register-level UART, or the host build)
// implements these few functions; the application and the engine never touch
// hardware directly.
#ifndef TESS_FIRMWARE_PLATFORM_H_
#define TESS_FIRMWARE_PLATFORM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Called once before main() (on the host, by main() itself).
void tess_platform_init(void);

// Writes a NUL-terminated string to the board's console.
void tess_platform_write(const char *text);

// Ends the program with `status` (QEMU: the emulator's exit code; a real
// board has nowhere to return to and sleeps forever).
__attribute__((noreturn)) void tess_platform_exit(int status);

// A monotonic 64-bit counter of raw ticks (cheap to read; the app converts
// totals with tess_platform_ticks_to_units at the end).
uint64_t tess_platform_ticks(void);

// Converts a number of ticks to tess_platform_tick_unit() units.
uint64_t tess_platform_ticks_to_units(uint64_t ticks);

// "instructions" (QEMU with -icount shift=0), "cycles" (DWT CYCCNT on a real
// board) or "none" (the host build, whose counter always reads 0).
const char *tess_platform_tick_unit(void);

// The board's name, as given to `tess build --board`.
const char *tess_platform_board(void);

// Deepest stack use so far in bytes (0 where it cannot be measured).
uint32_t tess_platform_stack_used(void);

// Keeps `size` bytes (the engine's saved state) where a reset does not reach
// them: a reserved flash area on the real boards (memory.ld's STORAGE region,
// erased and programmed, then read in place); in QEMU and on the host, where
// nothing outlives the process anyway, the caller's RAM buffer itself (no
// copy: the buffer must stay untouched until it is read back).
// Returns 0, or non-zero when the data does not fit or the flash reports an
// erase or programming error.
int32_t tess_platform_store(const uint8_t *data, uint32_t size);

// What the last tess_platform_store kept (its size in *size), or NULL when
// nothing is stored (a blank flash area).
const uint8_t *tess_platform_stored(uint32_t *size);

#ifdef __cplusplus
}
#endif

#endif  // TESS_FIRMWARE_PLATFORM_H_
