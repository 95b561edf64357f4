// tess_platform_store for QEMU and the host: the caller's RAM buffer is the
// storage (see platform.h); a power cycle loses it, as it loses the program.
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

namespace {

const uint8_t *stored_data = nullptr;
uint32_t stored_size = 0;

}  // namespace

int32_t tess_platform_store(const uint8_t *data, uint32_t size) {
    if (data == nullptr) {
        return 1;
    }
    stored_data = data;
    stored_size = size;
    return 0;
}

const uint8_t *tess_platform_stored(uint32_t *size) {
    *size = stored_size;
    return stored_data;
}
