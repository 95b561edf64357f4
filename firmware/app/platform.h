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

#ifdef __cplusplus
}
#endif

#endif  // TESS_FIRMWARE_PLATFORM_H_
