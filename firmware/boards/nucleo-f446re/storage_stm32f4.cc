// tess_platform_store on the STM32F446RE: the learned state goes to flash
// sector 7 (0x08060000, 128 KB, memory.ld's STORAGE region), erased and then
// programmed a word at a time (RM0390 section 3.6; 2.7-3.6 V supply, so 32-bit
// parallelism). The CPU stalls on instruction fetches while the single flash
// bank is busy, which is harmless: nothing else runs.
#include <stdint.h>

#include "flash_storage.h"
#include "platform.h"

namespace {

constexpr uintptr_t kFlash = 0x40023C00u;
constexpr uint32_t kAcr = 0x00, kKeyr = 0x04, kSr = 0x0C, kCr = 0x10;
constexpr uint32_t kKey1 = 0x45670123u, kKey2 = 0xCDEF89ABu;
constexpr uint32_t kSrBusy = 1u << 16, kSrErrors = 0xF0u;  // WRPERR, PGAERR, PGPERR, PGSERR
constexpr uint32_t kCrProgram = 1u << 0, kCrSectorErase = 1u << 1, kCrStart = 1u << 16, kCrLock = 1u << 31;
constexpr uint32_t kCrWords = 2u << 8;  // PSIZE = x32
constexpr uint32_t kStorageSector = 7u;
constexpr uint32_t kAcrDataCache = 1u << 10, kAcrDataCacheReset = 1u << 12;

volatile uint32_t &reg(uint32_t offset) { return *reinterpret_cast<volatile uint32_t *>(kFlash + offset); }

// Waits for the flash; returns its error bits (and clears them).
uint32_t wait_idle() {
    while ((reg(kSr) & kSrBusy) != 0u) {
    }
    const uint32_t errors = reg(kSr) & kSrErrors;
    reg(kSr) = errors;  // write 1 to clear
    return errors;
}

}  // namespace

int32_t tess_platform_store(const uint8_t *data, uint32_t size) {
    if (data == nullptr || flash_storage::record_words(size) * 4u > flash_storage::capacity()) {
        return 1;
    }
    if ((reg(kCr) & kCrLock) != 0u) {
        reg(kKeyr) = kKey1;
        reg(kKeyr) = kKey2;
    }
    uint32_t errors = wait_idle();
    reg(kCr) = kCrWords | kCrSectorErase | (kStorageSector << 3);
    reg(kCr) = reg(kCr) | kCrStart;
    errors |= wait_idle();
    reg(kCr) = kCrWords | kCrProgram;
    volatile uint32_t *target =
        reinterpret_cast<volatile uint32_t *>(const_cast<uint8_t *>(__tess_storage_start));
    for (uint32_t i = 0; errors == 0u && i < flash_storage::record_words(size); ++i) {
        target[i] = flash_storage::record_word(data, size, i);
        errors |= wait_idle();
    }
    reg(kCr) = kCrLock;
    // The ART accelerator's data cache may still hold the erased words.
    const uint32_t acr = reg(kAcr);
    reg(kAcr) = acr & ~kAcrDataCache;
    reg(kAcr) = (acr & ~kAcrDataCache) | kAcrDataCacheReset;
    reg(kAcr) = acr;
    if (errors != 0u) {
        return 2;
    }
    // Read back: a word that did not take (or a flash controller an emulator does not model) shows here.
    for (uint32_t i = 0; i < flash_storage::record_words(size); ++i) {
        if (target[i] != flash_storage::record_word(data, size, i)) {
            return 2;
        }
    }
    return 0;
}

const uint8_t *tess_platform_stored(uint32_t *size) { return flash_storage::stored(size); }
