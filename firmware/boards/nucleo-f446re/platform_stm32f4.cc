// NUCLEO-F446RE: console on USART2 (PA2 TX, AF7), which the on-board
// ST-LINK exposes as a virtual COM port, 115200 8N1. The core runs from the
// 16 MHz HSI it resets with; cycles come from the DWT counter.
#include <stdint.h>

#include "dwt.h"
#include "platform.h"

namespace {

constexpr uintptr_t kRcc = 0x40023800u;
constexpr uintptr_t kGpioA = 0x40020000u;
constexpr uintptr_t kUsart2 = 0x40004400u;

volatile uint32_t &reg(uintptr_t base, uint32_t offset) {
    return *reinterpret_cast<volatile uint32_t *>(base + offset);
}

constexpr uint32_t kRccAhb1Enr = 0x30, kRccApb1Enr = 0x40;
constexpr uint32_t kGpioModer = 0x00, kGpioAfrl = 0x20;
constexpr uint32_t kUsartSr = 0x00, kUsartDr = 0x04, kUsartBrr = 0x08, kUsartCr1 = 0x0C;
constexpr uint32_t kUsartTxEmpty = 1u << 7, kUsartTxComplete = 1u << 6;
constexpr uint32_t kUsartEnable = 1u << 13, kUsartTxEnable = 1u << 3;
constexpr uint32_t kBaudRate = 115200u;

void put_char(char c) {
    while ((reg(kUsart2, kUsartSr) & kUsartTxEmpty) == 0u) {
    }
    reg(kUsart2, kUsartDr) = static_cast<uint8_t>(c);
}

}  // namespace

void tess_platform_init(void) {
    reg(kRcc, kRccAhb1Enr) = reg(kRcc, kRccAhb1Enr) | (1u << 0);   // GPIOA clock
    reg(kRcc, kRccApb1Enr) = reg(kRcc, kRccApb1Enr) | (1u << 17);  // USART2 clock
    // PA2: alternate function 7 (USART2_TX).
    reg(kGpioA, kGpioModer) = (reg(kGpioA, kGpioModer) & ~(3u << 4)) | (2u << 4);
    reg(kGpioA, kGpioAfrl) = (reg(kGpioA, kGpioAfrl) & ~(0xFu << 8)) | (7u << 8);
    // APB1 runs at the HSI's 16 MHz after reset; oversampling by 16.
    reg(kUsart2, kUsartBrr) = (TESS_CORE_CLOCK_HZ + kBaudRate / 2u) / kBaudRate;
    reg(kUsart2, kUsartCr1) = kUsartEnable | kUsartTxEnable;
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
    (void)status;  // nothing to return to: let the last byte leave, then sleep
    while ((reg(kUsart2, kUsartSr) & kUsartTxComplete) == 0u) {
    }
    for (;;) {
        __asm volatile("wfi");
    }
}

uint64_t tess_platform_ticks(void) { return dwt_cycles(); }

uint64_t tess_platform_ticks_to_units(uint64_t ticks) { return ticks; }

const char *tess_platform_tick_unit(void) { return "cycles"; }

const char *tess_platform_board(void) { return TESS_BOARD_NAME; }
