#include "dwt.h"

namespace {

volatile uint32_t *const kDemcr = reinterpret_cast<volatile uint32_t *>(0xE000EDFCu);
volatile uint32_t *const kDwtCtrl = reinterpret_cast<volatile uint32_t *>(0xE0001000u);
volatile uint32_t *const kDwtCyccnt = reinterpret_cast<volatile uint32_t *>(0xE0001004u);
volatile uint32_t *const kDwtLockAccess = reinterpret_cast<volatile uint32_t *>(0xE0001FB0u);
constexpr uint32_t kTraceEnable = 1u << 24;
constexpr uint32_t kCycleCounterEnable = 1u << 0;
constexpr uint32_t kUnlockKey = 0xC5ACCE55u;  // the Cortex-M7 DWT is locked after reset

uint32_t last_count = 0;
uint32_t high_word = 0;

}  // namespace

void dwt_start(void) {
    *kDemcr = *kDemcr | kTraceEnable;
    *kDwtLockAccess = kUnlockKey;
    *kDwtCyccnt = 0u;
    *kDwtCtrl = *kDwtCtrl | kCycleCounterEnable;
    last_count = 0u;
    high_word = 0u;
}

uint64_t dwt_cycles(void) {
    const uint32_t count = *kDwtCyccnt;
    if (count < last_count) {
        ++high_word;
    }
    last_count = count;
    return (static_cast<uint64_t>(high_word) << 32) | count;
}
