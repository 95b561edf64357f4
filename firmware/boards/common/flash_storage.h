// The layout both real boards use in their STORAGE flash region: one word
// with the byte count (0xFFFFFFFF: erased, nothing stored), then the bytes,
// padded with 0xFF to whole words.
#ifndef TESS_FIRMWARE_FLASH_STORAGE_H_
#define TESS_FIRMWARE_FLASH_STORAGE_H_

#include <stddef.h>
#include <stdint.h>

extern "C" const uint8_t __tess_storage_start[];  // memory.ld
extern "C" const uint8_t __tess_storage_end[];

namespace flash_storage {

inline uint32_t capacity() { return static_cast<uint32_t>(__tess_storage_end - __tess_storage_start); }

// Word i of the record to program: the count, then the data packed little-endian.
inline uint32_t record_word(const uint8_t *data, uint32_t size, uint32_t i) {
    if (i == 0u) {
        return size;
    }
    uint32_t word = 0xFFFFFFFFu;
    for (uint32_t b = 0; b < 4u; ++b) {
        const uint32_t at = (i - 1u) * 4u + b;
        if (at < size) {
            word = (word & ~(0xFFu << (8u * b))) | (static_cast<uint32_t>(data[at]) << (8u * b));
        }
    }
    return word;
}

inline uint32_t record_words(uint32_t size) { return 1u + (size + 3u) / 4u; }

inline const uint8_t *stored(uint32_t *size) {
    const uint32_t count = *reinterpret_cast<const volatile uint32_t *>(__tess_storage_start);
    if (count == 0xFFFFFFFFu || count > capacity() - 4u) {
        *size = 0;
        return nullptr;
    }
    *size = count;
    return __tess_storage_start + 4;
}

}  // namespace flash_storage

#endif  // TESS_FIRMWARE_FLASH_STORAGE_H_
