/* veil keccak module: Keccak-256 as used by Ethereum.
 *
 * This is the original Keccak submission padding (pad10*1 with domain byte
 * 0x01), rate 136 bytes, capacity 512 bits -- NOT NIST FIPS 202 SHA3-256
 * (domain byte 0x06), which OpenSSL provides.  keccak256("") = c5d24601...,
 * sha3_256("") = a7ffc6f8...  Written here because OpenSSL 3.0 has no Keccak
 * with the old padding. */
#ifndef VEIL_KECCAK_H
#define VEIL_KECCAK_H

#include <stddef.h>
#include <stdint.h>

#define VEIL_KECCAK256_LEN 32
#define VEIL_KECCAK256_RATE 136

/* Streaming state; plain data, no allocation, no cleanup needed (wipe it
 * with veil_wipe if it absorbed secrets). */
struct veil_keccak256 {
	uint64_t st[25];
	size_t pos; /* bytes absorbed into the current block */
};

void veil_keccak256_init(struct veil_keccak256 *k);
void veil_keccak256_update(struct veil_keccak256 *k, const void *p, size_t n);
/* Writes the 32-byte digest; the state must be re-initialised before reuse. */
void veil_keccak256_final(struct veil_keccak256 *k,
			  uint8_t out[VEIL_KECCAK256_LEN]);

/* One-shot Keccak-256 of n bytes. */
void veil_keccak256(const void *p, size_t n, uint8_t out[VEIL_KECCAK256_LEN]);

/* The keccak-f[1600] permutation on 25 little-endian lanes (exposed for
 * tests against the Keccak team's permutation vectors). */
void veil_keccak_f1600(uint64_t st[25]);

#endif
