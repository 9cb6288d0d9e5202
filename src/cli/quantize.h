/* The model quantizer shared by `veil model quantize` and `veil model synth`
 * (which quantizes its F16 weights exactly as `quantize` would, so that
 * `synth --type q8_0` equals `synth --type f16` followed by `quantize q8_0`).
 * Implemented in model_quantize.c. */
#ifndef VEIL_CLI_QUANTIZE_H
#define VEIL_CLI_QUANTIZE_H

#include <stdbool.h>

#include "veil/gguf.h"

struct veil_qz_opts {
	enum veil_dtype type; /* F16, Q8_0, Q4_0, Q4_K or Q6_K */
	bool pure;            /* every 2-D weight to `type`, no mixing */
	int threads;          /* <= 0: one per CPU */
	bool quiet;           /* no per-tensor progress on stderr */
};

/* Reads the GGUF at in_path and writes out_path the way llama-quantize
 * (llama.cpp c392e509, no importance matrix) does: the same metadata with
 * general.quantization_version = 2 and general.file_type = the llama_ftype
 * moved to the end, tensors in llama.cpp's loader order (non-layer tensors
 * first, then by layer number, then by name), 1-D tensors and norms kept,
 * 2-D weights quantized row by row with ggml's reference rounding.  The
 * output is written to a temporary file and renamed into place.  Returns 0
 * or a negative VEIL_E* code (veil_err_detail() says why). */
int veil_cli_quantize_file(const char *in_path, const char *out_path,
			   const struct veil_qz_opts *o);

/* Parses "f16", "q8_0", "q4_0", "q4_k", "q6_k" (any case); -1 otherwise. */
int veil_cli_quantize_type_parse(const char *s);

#endif
