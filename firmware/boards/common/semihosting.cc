#include "semihosting.h"

namespace {

constexpr uint32_t kSysWrite0 = 0x04;
constexpr uint32_t kSysExitExtended = 0x20;
constexpr uint32_t kApplicationExit = 0x20026;  // ADP_Stopped_ApplicationExit

uint32_t semihosting_call(uint32_t operation, const void *argument) {
    register uint32_t r0 __asm("r0") = operation;
    register const void *r1 __asm("r1") = argument;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

}  // namespace

void semihosting_write0(const char *text) { semihosting_call(kSysWrite0, text); }

void semihosting_exit(int status) {
    const uint32_t block[2] = {kApplicationExit, static_cast<uint32_t>(status)};
    semihosting_call(kSysExitExtended, block);
    for (;;) {
        __asm volatile("wfi");
    }
}
