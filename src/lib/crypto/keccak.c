/* Keccak-256 (Ethereum), compact keccak-f[1600].
 *
 * Reference: "The Keccak reference", version 3.0 (Bertoni, Daemen, Peeters,
 * Van Assche), §1.2 (the five step mappings) and §5.1 (pad10*1).  Lanes are
 * little-endian 64-bit words; st[x + 5y] is lane (x, y). */
#include "veil/keccak.h"

#include <string.h>

#include "veil/base.h"

static const uint64_t round_consts[24] = {
	0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808aull,
	0x8000000080008000ull, 0x000000000000808bull, 0x0000000080000001ull,
	0x8000000080008081ull, 0x8000000000008009ull, 0x000000000000008aull,
	0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000aull,
	0x000000008000808bull, 0x800000000000008bull, 0x8000000000008089ull,
	0x8000000000008003ull, 0x8000000000008002ull, 0x8000000000000080ull,
	0x000000000000800aull, 0x800000008000000aull, 0x8000000080008081ull,
	0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull,
};

/* rho offsets and pi lane order, walked along the pi cycle starting at
 * lane 1 (the usual compact formulation). */
static const unsigned rho_offsets[24] = {
	1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14,
	27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
};
static const unsigned pi_lanes[24] = {
	10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4,
	15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
};

static inline uint64_t rotl64(uint64_t x, unsigned n)
{
	return (x << n) | (x >> ((64 - n) & 63));
}

void veil_keccak_f1600(uint64_t st[25])
{
	uint64_t bc[5], t;

	for (int round = 0; round < 24; round++) {
		/* theta: column parities, each XORed into its neighbours. */
		for (int x = 0; x < 5; x++)
			bc[x] = st[x] ^ st[x + 5] ^ st[x + 10] ^ st[x + 15] ^
				st[x + 20];
#define THETA(x, xm1, xp1)                                  \
	t = bc[xm1] ^ rotl64(bc[xp1], 1);                   \
	st[x] ^= t;                                         \
	st[x + 5] ^= t;                                     \
	st[x + 10] ^= t;                                    \
	st[x + 15] ^= t;                                    \
	st[x + 20] ^= t;
		THETA(0, 4, 1)
		THETA(1, 0, 2)
		THETA(2, 1, 3)
		THETA(3, 2, 4)
		THETA(4, 3, 0)
#undef THETA
		/* rho and pi, walking the pi cycle from lane 1. */
		t = st[1];
#pragma GCC unroll 24
		for (int i = 0; i < 24; i++) {
			unsigned j = pi_lanes[i];
			uint64_t tmp = st[j];

			st[j] = rotl64(t, rho_offsets[i]);
			t = tmp;
		}
		/* chi, row by row. */
#pragma GCC unroll 5
		for (int y = 0; y < 25; y += 5) {
			uint64_t a0 = st[y], a1 = st[y + 1], a2 = st[y + 2],
				 a3 = st[y + 3], a4 = st[y + 4];

			st[y] = a0 ^ (~a1 & a2);
			st[y + 1] = a1 ^ (~a2 & a3);
			st[y + 2] = a2 ^ (~a3 & a4);
			st[y + 3] = a3 ^ (~a4 & a0);
			st[y + 4] = a4 ^ (~a0 & a1);
		}
		/* iota */
		st[0] ^= round_consts[round];
	}
}

/* XORs byte b into the state at byte offset i (little-endian lanes). */
static inline void xor_byte(uint64_t st[25], size_t i, uint8_t b)
{
	st[i / 8] ^= (uint64_t)b << (8 * (i % 8));
}

void veil_keccak256_init(struct veil_keccak256 *k)
{
	memset(k, 0, sizeof(*k));
}

void veil_keccak256_update(struct veil_keccak256 *k, const void *p, size_t n)
{
	const uint8_t *in = p;

	while (n > 0) {
		/* Whole aligned lanes at a time when possible. */
		if (k->pos % 8 == 0 && n >= 8 &&
		    k->pos + 8 <= VEIL_KECCAK256_RATE) {
			uint64_t lane = 0;

			for (int b = 0; b < 8; b++)
				lane |= (uint64_t)in[b] << (8 * b);
			k->st[k->pos / 8] ^= lane;
			k->pos += 8;
			in += 8;
			n -= 8;
		} else {
			xor_byte(k->st, k->pos++, *in++);
			n--;
		}
		if (k->pos == VEIL_KECCAK256_RATE) {
			veil_keccak_f1600(k->st);
			k->pos = 0;
		}
	}
}

void veil_keccak256_final(struct veil_keccak256 *k,
			  uint8_t out[VEIL_KECCAK256_LEN])
{
	/* pad10*1 with the Keccak (pre-FIPS 202) domain byte 0x01; when only
	 * one byte is left the two bits share it (0x81). */
	xor_byte(k->st, k->pos, 0x01);
	xor_byte(k->st, VEIL_KECCAK256_RATE - 1, 0x80);
	veil_keccak_f1600(k->st);
	for (size_t i = 0; i < VEIL_KECCAK256_LEN; i++)
		out[i] = (uint8_t)(k->st[i / 8] >> (8 * (i % 8)));
	veil_wipe(k, sizeof(*k));
}

void veil_keccak256(const void *p, size_t n, uint8_t out[VEIL_KECCAK256_LEN])
{
	struct veil_keccak256 k;

	veil_keccak256_init(&k);
	veil_keccak256_update(&k, p, n);
	veil_keccak256_final(&k, out);
}
