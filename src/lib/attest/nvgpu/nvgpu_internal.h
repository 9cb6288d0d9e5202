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

#endif
