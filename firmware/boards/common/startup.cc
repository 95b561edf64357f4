// Cortex-M start-up shared by every board: the vector table, the reset
// handler (FPU on, .data copied, .bss zeroed, stack painted, constructors),
// and fault handlers that report through the board's console.
#include <stdint.h>

#include "platform.h"

extern "C" {
extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_limit[], __stack_top[];
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main(void);
void Reset_Handler(void);
void Reset_Continue(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SecureFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
}

typedef void (*VectorEntry)(void);

// Only the 16 system exceptions: the firmware polls its peripherals and
// enables no external interrupt, so no device vectors are needed.
__attribute__((section(".vectors"), used)) const VectorEntry tess_vector_table[16] = {
    reinterpret_cast<VectorEntry>(__stack_top),
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler,
    nullptr,
    nullptr,
    nullptr,
    SVC_Handler,
    DebugMon_Handler,
    nullptr,
    PendSV_Handler,
    SysTick_Handler,
};

// The FPU must be on before compiled code can touch a floating-point
// register, so the first instructions after reset are written by hand.
extern "C" __attribute__((naked, noreturn)) void Reset_Handler(void) {
#if defined(__ARM_FP)
    __asm volatile(
        "ldr r0, =0xE000ED88\n"  // SCB->CPACR
        "ldr r1, [r0]\n"
        "orr r1, r1, #(0xF << 20)\n"  // CP10 and CP11 full access (FPU, MVE)
        "str r1, [r0]\n"
        "dsb\n"
        "isb\n");
#endif
    __asm volatile("b Reset_Continue\n");
}

static constexpr uint32_t kStackPaint = 0xA5A5A5A5u;

extern "C" __attribute__((noreturn, used)) void Reset_Continue(void) {
    for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = __bss_start; dst < __bss_end;) {
        *dst++ = 0u;
    }
    // Paint the unused stack so tess_platform_stack_used() can find the
    // deepest point main() reached (the RAM figure includes it).
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *word = __stack_limit; word < sp - 16;) {
        *word++ = kStackPaint;
    }
    for (void (**init)(void) = __init_array_start; init < __init_array_end; ++init) {
        (*init)();
    }
    const int status = main();
    tess_platform_exit(status);
}

uint32_t tess_platform_stack_used(void) {
    const uint32_t *word = __stack_limit;
    while (word < __stack_top && *word == kStackPaint) {
        ++word;
    }
    return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(__stack_top) -
                                 reinterpret_cast<uintptr_t>(word));
}

extern "C" void Default_Handler(void) {
    tess_platform_write("{\"error\": \"unexpected exception\"}\n");
    tess_platform_exit(3);
}

extern "C" void HardFault_Handler(void) {
    tess_platform_write("{\"error\": \"hard fault\"}\n");
    tess_platform_exit(4);
}
