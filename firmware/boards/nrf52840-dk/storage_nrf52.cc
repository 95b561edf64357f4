// tess_platform_store on the nRF52840: the learned state goes to the last
// 32 KB of flash (0xF8000, eight 4 KB pages, memory.ld's STORAGE region),
// erased page by page and programmed a word at a time through the NVMC
// (nRF52840 PS section 4.3; no SoftDevice, so the NVMC is ours).
#include <stdint.h>

#include "flash_storage.h"
#include "platform.h"

namespace {

constexpr uintptr_t kNvmc = 0x4001E000u;
constexpr uint32_t kReady = 0x400, kConfig = 0x504, kErasePage = 0x508;
constexpr uint32_t kReadOnly = 0u, kWriteEnable = 1u, kEraseEnable = 2u;
constexpr uint32_t kPageBytes = 4096u;

volatile uint32_t &reg(uint32_t offset) { return *reinterpret_cast<volatile uint32_t *>(kNvmc + offset); }

void wait_ready() {
    while ((reg(kReady) & 1u) == 0u) {
    }
}

}  // namespace

int32_t tess_platform_store(const uint8_t *data, uint32_t size) {
    const uint32_t words = flash_storage::record_words(size);
    if (data == nullptr || words * 4u > flash_storage::capacity()) {
        return 1;
    }
    const uintptr_t start = reinterpret_cast<uintptr_t>(__tess_storage_start);
    reg(kConfig) = kEraseEnable;
    for (uintptr_t page = start; page < start + words * 4u; page += kPageBytes) {
        reg(kErasePage) = static_cast<uint32_t>(page);
        wait_ready();
    }
    reg(kConfig) = kWriteEnable;
    volatile uint32_t *target = reinterpret_cast<volatile uint32_t *>(start);
    for (uint32_t i = 0; i < words; ++i) {
        target[i] = flash_storage::record_word(data, size, i);
        wait_ready();
    }
    reg(kConfig) = kReadOnly;
    // Read back: the NVMC reports no errors, so a word that did not take shows here.
    for (uint32_t i = 0; i < words; ++i) {
        if (target[i] != flash_storage::record_word(data, size, i)) {
            return 2;
        }
    }
    return 0;
}

const uint8_t *tess_platform_stored(uint32_t *size) { return flash_storage::stored(size); }
