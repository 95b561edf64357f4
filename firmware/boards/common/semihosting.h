// Arm semihosting (the "Angel" interface): the debugger or QEMU services a
// BKPT 0xAB with the operation in r0 and its argument in r1.
#ifndef TESS_FIRMWARE_SEMIHOSTING_H_
#define TESS_FIRMWARE_SEMIHOSTING_H_

#include <stdint.h>

// Writes a NUL-terminated string to the host console (SYS_WRITE0).
void semihosting_write0(const char *text);

// Ends the simulation with `status` as the host exit code (SYS_EXIT_EXTENDED,
// reason ADP_Stopped_ApplicationExit).
__attribute__((noreturn)) void semihosting_exit(int status);

#endif  // TESS_FIRMWARE_SEMIHOSTING_H_
