/* Private to the tokenizer: UTF-8 decoding and the Unicode properties that
 * llama.cpp's pre-tokenizers use (src/unicode.cpp there), reproduced with
 * the same semantics, including its quirks:
 *   - invalid UTF-8 decodes to U+FFFD and skips one byte;
 *   - "whitespace" is PropList's White_Space list, hard-coded;
 *   - every code point has exactly one class flag; unassigned ones are
 *     VEIL_UNI_UNDEFINED (non-zero), so only "outside the text" has no flag.
 * The class and lowercase tables are generated (unicode_tables.c, by
 * scripts/gen_unicode_tables.py). */
#ifndef VEIL_ENGINE_UNICODE_H
#define VEIL_ENGINE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Class flags (llama.cpp's unicode_cpt_flags bits) plus whitespace. */
enum {
	VEIL_UNI_UNDEFINED = 0x0001,
	VEIL_UNI_NUMBER = 0x0002,      /* \p{N} */
	VEIL_UNI_LETTER = 0x0004,      /* \p{L} */
	VEIL_UNI_SEPARATOR = 0x0008,   /* \p{Z} */
	VEIL_UNI_MARK = 0x0010,        /* \p{M} */
	VEIL_UNI_PUNCT = 0x0020,       /* \p{P} */
	VEIL_UNI_SYMBOL = 0x0040,      /* \p{S} */
	VEIL_UNI_CONTROL = 0x0080,     /* \p{C} */
	VEIL_UNI_CLASS_MASK = 0x00ff,
	VEIL_UNI_WHITESPACE = 0x0100,  /* \s */
};

#define VEIL_UNI_MAX_CPT 0x110000u
#define VEIL_UNI_REPLACEMENT 0xFFFDu

/* Generated tables (unicode_tables.c).  Class ranges: each entry is
 * (first_cpt << 3 | class) where the flag is 1 << class; it holds up to the
 * next entry's first code point.  Lowercase runs: for k < count, code point
 * first + k*stride lowercases to itself + delta. */
struct veil_uni_lower_run {
	uint32_t first;
	uint16_t count;
	int32_t delta;
	uint8_t stride;
};

extern const uint32_t veil_uni_class_ranges[];
extern const size_t veil_uni_class_ranges_n;
extern const struct veil_uni_lower_run veil_uni_lower_runs[];
extern const size_t veil_uni_lower_runs_n;

/* Byte length of a UTF-8 sequence from its first byte, as llama.cpp's
 * unicode_len_utf8 (continuation bytes count 1; no validation). */
size_t veil_uni_len_utf8(uint8_t lead);

/* Decodes the code point at p[0..n) (n >= 1) as llama.cpp's
 * unicode_cpt_from_utf8 wrapped by unicode_cpts_from_utf8: an invalid or
 * truncated sequence yields U+FFFD and consumes one byte.  Sequences that
 * decode above U+10FFFF (where llama.cpp would throw later on) are treated
 * as invalid too.  Stores the bytes consumed in *adv. */
uint32_t veil_uni_decode(const uint8_t *p, size_t n, size_t *adv);

/* Encodes cpt (<= 0x10FFFF; surrogates are encoded as-is) into out;
 * returns the byte count (1..4), 0 for a code point out of range. */
size_t veil_uni_encode(uint32_t cpt, uint8_t out[4]);

/* Class flag | VEIL_UNI_WHITESPACE; VEIL_UNI_UNDEFINED past U+10FFFF. */
unsigned veil_uni_flags(uint32_t cpt);

/* Simple lowercase mapping (UnicodeData.txt); cpt itself when none. */
uint32_t veil_uni_tolower(uint32_t cpt);

/* GPT-2 byte-level mapping: byte -> code point (printable bytes map to
 * themselves, the others to U+0100..U+0143), and back (-1 when cpt is not
 * the image of a byte). */
uint32_t veil_uni_byte_to_cpt(uint8_t b);
int veil_uni_cpt_to_byte(uint32_t cpt);

#endif
