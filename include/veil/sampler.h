/* Token sampling and stop strings.
 *
 * The sampler turns one step's raw logits into a token, with the chain and
 * the semantics of llama.cpp's default sampler chain:
 *
 *   penalties -> top_k -> top_p -> min_p -> temperature -> random pick
 *
 * top_p and min_p act on the distribution at temperature 1 (the temperature
 * is applied after them, as in llama.cpp).  A temperature below
 * VEIL_SAMPLER_GREEDY_TEMP (0 included), or top_k == 1, is greedy: the
 * exact argmax after penalties, ties to the lowest id.
 * Candidates are always ordered by (logit descending, id ascending), so the
 * whole chain is deterministic: the random pick uses a PRNG owned by the
 * sampler (xoshiro256**, its state seeded from `seed` through splitmix64),
 * and the same seed with the same logits and history gives the same tokens
 * on every machine with IEEE float arithmetic.
 *
 * Cost per token is O(n_vocab), never a full sort: the full-vocabulary
 * passes (max, exp, sums) are vectorised; top_k uses a heap that skips
 * blocks which cannot enter it (linear selection above 4096); top_p buckets
 * the probability mass by logit and sorts only the bucket where the
 * cumulative sum crosses top_p.  The random pick does not depend on the
 * machine: the exp is a fixed polynomial, not libm.
 *
 * A sampler is used by one thread at a time (it owns mutable state). */
#ifndef VEIL_SAMPLER_H
#define VEIL_SAMPLER_H

#include "veil/base.h"

/* Temperatures below this are greedy: 1/T would overflow a float (or make
 * every weight but the best 0 anyway). */
#define VEIL_SAMPLER_GREEDY_TEMP 1e-6f

struct veil_sampler_params {
	float temperature;       /* 0 (< VEIL_SAMPLER_GREEDY_TEMP) = greedy
				  * (argmax, ties -> lowest id) */
	int32_t top_k;           /* 0 = off */
	float top_p;             /* 1 = off; 0 keeps only the best token */
	float min_p;             /* 0 = off */
	uint64_t seed;           /* same seed + same logits -> same choices */
	float repeat_penalty;    /* 1 = off (llama.cpp: divide positive
				  * logits, multiply negative ones) */
	int32_t repeat_last_n;   /* window of the penalties, default 64;
				  * -1 = whole history, 0 = penalties off */
	float frequency_penalty; /* OpenAI: logit -= count * fp */
	float presence_penalty;  /* OpenAI: logit -= (count > 0) * pp */
};

/* temperature 1, top_k 0, top_p 1, min_p 0, seed 0, repeat_penalty 1,
 * repeat_last_n 64, frequency 0, presence 0. */
void veil_sampler_params_default(struct veil_sampler_params *p);

/* Checks ranges: temperature >= 0, top_k >= 0, top_p and min_p in [0, 1],
 * repeat_penalty > 0, repeat_last_n >= -1, penalties finite.  VEIL_EINVAL
 * with a detail naming the field. */
int veil_sampler_params_check(const struct veil_sampler_params *p);

struct veil_logprob {
	int32_t id;
	float logprob;
};

struct veil_sampler;

/* Copies p (checked as above).  The sampler holds O(n_vocab) scratch memory
 * (16 bytes per vocabulary entry; 28 with repeat_last_n = -1), made when
 * first needed: penalty state only when penalties are on, the chain's
 * scratch at the first veil_sampler_sample() or non-greedy pick (a greedy
 * sampler without penalties holds none).  Free with veil_sampler_free(). */
int veil_sampler_new(const struct veil_sampler_params *p, int32_t n_vocab,
		     struct veil_sampler **out);
void veil_sampler_free(struct veil_sampler *s);

/* Records a token (prompt or generated) in the history used by the
 * penalties.  Ids outside [0, n_vocab) are ignored. */
void veil_sampler_accept(struct veil_sampler *s, int32_t token);

/* Forgets the history and reseeds the PRNG: the sampler behaves as newly
 * created. */
void veil_sampler_reset(struct veil_sampler *s);

/* Picks the next token from n_vocab raw logits.  The array may be modified
 * (NaN becomes -inf, +inf becomes FLT_MAX); the chain works on a copy.
 * *chosen gets the token and its log-probability under the model's raw
 * distribution (log_softmax of the raw logits, before penalties and
 * temperature, as OpenAI reports logprobs).  If n_top > 0, top[0..n_top)
 * get the n_top most likely tokens of the raw distribution, best first
 * (ties: lower id first).  Does NOT call accept.
 * VEIL_EINVAL when n_top > n_vocab or every logit is -inf/NaN; VEIL_ENOMEM
 * when the scratch cannot be made. */
int veil_sampler_sample(struct veil_sampler *s, float *logits,
			struct veil_logprob *chosen, struct veil_logprob *top,
			int n_top);

/* As veil_sampler_sample() without log-probabilities: *id gets the token
 * veil_sampler_sample() would choose from the same state (the same chain,
 * the same PRNG draws), but no log-softmax is computed.  Greedy without
 * active penalties is two read-only vectorised passes, the maximum and then
 * its first index (ties -> lowest id).  The array may be modified as
 * above.  Does NOT call accept.
 * VEIL_EINVAL when every logit is -inf/NaN; VEIL_ENOMEM when the scratch
 * cannot be made. */
int veil_sampler_pick(struct veil_sampler *s, float *logits, int32_t *id);

/* ---- stop strings and UTF-8-safe streaming ----------------------------- */

#define VEIL_STOP_MAX 4          /* OpenAI allows up to 4 stop sequences */
#define VEIL_STOP_MAX_LEN 256    /* bytes per stop sequence */

/* Holds back generated text until it is safe to send.
 *
 * Emitted text is always valid UTF-8: an incomplete sequence at the end is
 * held until the next piece completes it; bytes that can never form a valid
 * sequence are replaced by U+FFFD (one per maximal invalid subpart, as the
 * Unicode standard recommends).  Stop strings are matched on the raw bytes.
 * When several stop strings occur, the one that completes first wins (ties:
 * the longer one); the result does not depend on how the text was split into
 * pieces.  The stopper wipes the text it holds (and the stop strings) before
 * freeing them. */
struct veil_stopper;

/* Copies the n stop strings (NUL-terminated; n may be 0).  VEIL_EINVAL for
 * n > VEIL_STOP_MAX, an empty one, or one longer than VEIL_STOP_MAX_LEN. */
int veil_stopper_new(const char *const *stops, size_t n,
		     struct veil_stopper **out);
void veil_stopper_free(struct veil_stopper *st);

/* Feeds the bytes of the next generated piece.  Appends to `emit` the text
 * that is now safe to send: never a byte that could still be the start of a
 * stop string, never an incomplete UTF-8 sequence.  *stopped = true once a
 * stop string is complete; the stop string itself and anything after it are
 * not emitted (text before it is emitted at once, an incomplete UTF-8 tail
 * replaced by U+FFFD).  After a stop, further feeds emit nothing.  An error
 * (VEIL_ERANGE when emit is full) leaves the stopper unusable. */
int veil_stopper_feed(struct veil_stopper *st, const char *piece, size_t len,
		      struct veil_buf *emit, bool *stopped);

/* End of generation: appends what was held back (an incomplete UTF-8
 * sequence at the very end is replaced by U+FFFD).  Nothing after a stop. */
int veil_stopper_flush(struct veil_stopper *st, struct veil_buf *emit);

/* True once a stop string was seen. */
bool veil_stopper_stopped(const struct veil_stopper *st);

/* Index (into the array given to veil_stopper_new) of the stop string that
 * ended generation, -1 when none. */
int veil_stopper_which(const struct veil_stopper *st);

#endif
