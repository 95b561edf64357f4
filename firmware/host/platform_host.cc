// The host build of the demo: same application and engine, compiled with the
// machine's g++, printing to stdout. It has no instruction counter; its result
// line is the bit-exact reference the firmware is compared with.
#include <stdio.h>
#include <stdlib.h>

#include "platform.h"

void tess_platform_init(void) {}

void tess_platform_write(const char *text) {
    fputs(text, stdout);
    fflush(stdout);
}

void tess_platform_exit(int status) { exit(status); }

uint64_t tess_platform_ticks(void) { return 0u; }

uint64_t tess_platform_ticks_to_units(uint64_t ticks) { return ticks; }

const char *tess_platform_tick_unit(void) { return "none"; }

const char *tess_platform_board(void) { return "host"; }

uint32_t tess_platform_stack_used(void) { return 0u; }
