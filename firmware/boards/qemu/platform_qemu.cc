// The four QEMU boards (mps2-an386/an500/an505, mps3-an547): console and exit
// through semihosting, and a clock from SysTick.
//
// QEMU does not model the DWT cycle counter. Run with `-icount shift=0` and
// every guest instruction advances the virtual clock by exactly 1 ns, while
// SysTick counts the board's SYSCLK (TESS_SYSCLK_HZ) on that clock: one tick
// is 1e9 / TESS_SYSCLK_HZ instructions. The app averages over thousands of
// steps, so the tick's granularity (40 instructions at 25 MHz) washes out.
#include <stdint.h>

#include "platform.h"
#include "semihosting.h"

#ifndef TESS_SYSCLK_HZ
#error "TESS_SYSCLK_HZ (the board's SysTick clock) must be defined"
#endif
#ifndef TESS_BOARD_NAME
#error "TESS_BOARD_NAME must be defined"
#endif

namespace {

struct SysTickRegisters {
    volatile uint32_t ctrl;
    volatile uint32_t load;
    volatile uint32_t val;
    volatile uint32_t calib;
};

SysTickRegisters *const kSysTick = reinterpret_cast<SysTickRegisters *>(0xE000E010u);
constexpr uint32_t kReload = 0x00FFFFFFu;  // the full 24-bit range
constexpr uint32_t kEnable = 1u << 0;
constexpr uint32_t kTickInterrupt = 1u << 1;
constexpr uint32_t kProcessorClock = 1u << 2;

volatile uint32_t systick_wraps = 0;

}  // namespace

extern "C" void SysTick_Handler(void) { systick_wraps = systick_wraps + 1u; }

void tess_platform_init(void) {
    kSysTick->load = kReload;
    kSysTick->val = 0u;
    kSysTick->ctrl = kEnable | kTickInterrupt | kProcessorClock;
}

void tess_platform_write(const char *text) { semihosting_write0(text); }

void tess_platform_exit(int status) { semihosting_exit(status); }

uint64_t tess_platform_ticks(void) {
    uint32_t wraps;
    uint32_t value;
    do {  // re-read if SysTick wrapped between the two loads
        wraps = systick_wraps;
        value = kSysTick->val;
    } while (wraps != systick_wraps);
    return static_cast<uint64_t>(wraps) * (kReload + 1u) + (kReload - value);
}

uint64_t tess_platform_ticks_to_units(uint64_t ticks) {
    return ticks * 1000000000ull / TESS_SYSCLK_HZ;  // exact for 20, 25 and 32 MHz
}

const char *tess_platform_tick_unit(void) { return "instructions"; }

const char *tess_platform_board(void) { return TESS_BOARD_NAME; }
