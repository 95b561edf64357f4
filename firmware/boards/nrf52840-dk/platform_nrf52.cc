// nRF52840-DK: console on UART0 (TX on P0.06), which the on-board J-Link
// exposes as a virtual COM port, 115200 8N1. The core runs at 64 MHz;
// cycles come from the DWT counter.
#include <stdint.h>

#include "dwt.h"
#include "platform.h"

namespace {

constexpr uintptr_t kUart0 = 0x40002000u;
constexpr uintptr_t kGpioP0 = 0x50000000u;
constexpr uint32_t kTxPin = 6u;

volatile uint32_t &reg(uintptr_t base, uint32_t offset) {
    return *reinterpret_cast<volatile uint32_t *>(base + offset);
}

constexpr uint32_t kTasksStartTx = 0x008, kTasksStopTx = 0x00C, kEventsTxReady = 0x11C;
constexpr uint32_t kEnable = 0x500, kPselTxd = 0x50C, kTxd = 0x51C, kBaudrate = 0x524, kConfig = 0x56C;
constexpr uint32_t kEnableUart = 4u;
constexpr uint32_t kBaud115200 = 0x01D7E000u;
constexpr uint32_t kGpioOutSet = 0x508, kGpioPinCnf = 0x700;

void put_char(char c) {
    reg(kUart0, kEventsTxReady) = 0u;
    reg(kUart0, kTxd) = static_cast<uint8_t>(c);
    while (reg(kUart0, kEventsTxReady) == 0u) {
    }
}

}  // namespace

void tess_platform_init(void) {
    reg(kGpioP0, kGpioOutSet) = 1u << kTxPin;         // idle high
    reg(kGpioP0, kGpioPinCnf + 4u * kTxPin) = 1u;       // output
    reg(kUart0, kPselTxd) = kTxPin;                     // port 0, connected
    reg(kUart0, kBaudrate) = kBaud115200;
    reg(kUart0, kConfig) = 0u;                          // 8N1, no flow control
    reg(kUart0, kEnable) = kEnableUart;
    reg(kUart0, kTasksStartTx) = 1u;
    dwt_start();
}

void tess_platform_write(const char *text) {
    for (; *text != '\0'; ++text) {
        if (*text == '\n') {
            put_char('\r');
        }
        put_char(*text);
    }
}

void tess_platform_exit(int status) {
    (void)status;  // nothing to return to: stop the transmitter, then sleep
    reg(kUart0, kTasksStopTx) = 1u;
    for (;;) {
        __asm volatile("wfi");
    }
}

uint64_t tess_platform_ticks(void) { return dwt_cycles(); }

uint64_t tess_platform_ticks_to_units(uint64_t ticks) { return ticks; }

const char *tess_platform_tick_unit(void) { return "cycles"; }

const char *tess_platform_board(void) { return TESS_BOARD_NAME; }
