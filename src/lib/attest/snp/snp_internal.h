/* Private to the snp module. */
#ifndef VEIL_SNP_INTERNAL_H
#define VEIL_SNP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "veil/snp.h"

#define SNP_ROOT_COUNT 3

struct snp_root {
	enum veil_snp_product product;
	const char *name;
	const uint8_t *ask;
	size_t ask_len;
	const uint8_t *ark;
	size_t ark_len;
};

extern const struct snp_root snp_roots[SNP_ROOT_COUNT];

#endif
