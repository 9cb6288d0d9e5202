/* Private to the nvgpu module. */
#ifndef VEIL_NVGPU_INTERNAL_H
#define VEIL_NVGPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "veil/base.h"
#include "veil/nvgpu.h"

extern const uint8_t *const nvgpu_device_root_der;
extern const size_t nvgpu_device_root_der_len;
/* NVIDIA CoRIM signing Root CA (nvgpu_rim_root.c) */
extern const uint8_t *const nvgpu_rim_root_der;
extern const size_t nvgpu_rim_root_der_len;

/* Makes an error text that may quote evidence (a RIM's Algorithm value,
 * libxml2's and xmlsec1's messages) printable ASCII in place: trailing
 * whitespace is dropped and every other byte outside 0x20..0x7e becomes '?',
 * so a cut never leaves half a UTF-8 sequence (a JSON verdict would refuse
 * the string) and no newline forges a line on a terminal or in a log. */
void nvgpu_ascii(char *s);

#endif
