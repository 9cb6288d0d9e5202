/* The inference engine: continuous batching of many generation requests
 * over one model.
 *
 * An engine owns a model, its tokenizer, a thread pool, a context with
 * max_batch sequence slots (each with its own KV cache of n_ctx positions)
 * and a bounded queue of waiting requests.  One dedicated engine thread
 * loops: it admits waiting requests into free slots, builds one forward
 * batch holding the next token of every generating sequence plus chunks of
 * newly admitted prompts (prefill, at most step_tokens tokens in all),
 * samples one token per sequence that finished its prompt (the sequences
 * of a step in parallel on the engine's thread pool, which the forward pass
 * uses too), invokes the callbacks (serially, in slot order), and retires
 * finished requests.  When nothing is left to do it
 * sleeps on a condition variable.
 *
 * Callbacks run on the engine thread, one request's events in order.  They
 * must not block (copy the data, hand it to another thread or event loop,
 * return): while a callback runs, every sequence waits.  A callback may call
 * veil_engine_submit() and veil_engine_cancel() but never
 * veil_engine_generate() or veil_engine_free().
 *
 * Every request accepted by veil_engine_submit() gets exactly one final
 * event (finish != VEIL_FINISH_NONE), after which its callback is never
 * called again and the engine keeps no pointer to the caller's user data. */
#ifndef VEIL_ENGINE_H
#define VEIL_ENGINE_H

#include "veil/base.h"
#include "veil/model.h"
#include "veil/sampler.h"
#include "veil/tokenizer.h"

#define VEIL_ENGINE_MAX_LOGPROBS 20

enum veil_finish {
	VEIL_FINISH_NONE = 0,    /* still generating */
	VEIL_FINISH_STOP,        /* end-of-generation token or a stop string */
	VEIL_FINISH_LENGTH,      /* max_tokens reached or the context is full */
	VEIL_FINISH_CANCELLED,   /* veil_engine_cancel() or engine shutdown */
	VEIL_FINISH_ERROR,       /* internal failure (event.error says which) */
};

/* "stop", "length", "cancelled", "error"; NULL for VEIL_FINISH_NONE.
 * (OpenAI's finish_reason is "stop" or "length".) */
const char *veil_finish_name(enum veil_finish f);

struct veil_engine_usage {
	int32_t prompt_tokens;
	int32_t completion_tokens;   /* tokens sampled, an EOS included */
};

/* One event per sampled token; the last one has finish set (it may carry
 * no token: token = -1 after a cancellation or an error). */
struct veil_engine_event {
	uint64_t id;                 /* the request's id */
	int32_t token;               /* sampled id, -1 when none */
	/* Text that is now safe to send: valid UTF-8, never a part of a stop
	 * string; may be empty (held back), and on the final event includes
	 * whatever was held back.  End-of-generation tokens add no text.
	 * Valid during the callback only. */
	const char *text;
	size_t text_len;
	struct veil_logprob chosen;  /* token and its log-probability; the
				      * logprob is computed only for requests
				      * with n_logprobs > 0 (else 0) */
	const struct veil_logprob *top; /* n_top best alternatives, best first */
	int n_top;
	enum veil_finish finish;
	int error;                   /* VEIL_E* when finish == VEIL_FINISH_ERROR */
	struct veil_engine_usage usage; /* counts so far (final on the last) */
};

typedef void (*veil_engine_cb)(const struct veil_engine_event *ev, void *user);

/* Everything is copied by veil_engine_submit(); the caller's arrays and
 * strings may be freed on return. */
struct veil_engine_request {
	const int32_t *prompt;       /* token ids, BOS included if wanted */
	size_t n_prompt;             /* 1..n_ctx */
	struct veil_sampler_params sampling;
	int32_t max_tokens;          /* <= 0: until the context is full */
	const char *const *stops;    /* up to VEIL_STOP_MAX stop strings */
	size_t n_stops;
	int n_logprobs;              /* 0..VEIL_ENGINE_MAX_LOGPROBS */
	veil_engine_cb cb;           /* required */
	void *user;
};

struct veil_engine_params {
	int32_t max_batch;    /* sequence slots; 0 = 8 */
	int32_t max_queue;    /* waiting requests beyond the slots; 0 = 64 */
	int32_t n_ctx;        /* positions per sequence; 0 = min(train, 4096) */
	int32_t n_threads;    /* 0 = all cores */
	int32_t step_tokens;  /* most tokens per forward step; 0 = 512 */
	bool lazy_kv;         /* KV pages resident as written, not all at start */
};

void veil_engine_params_default(struct veil_engine_params *p);

struct veil_engine;

/* Loads the model and its tokenizer from path and starts the engine thread.
 * VEIL_ENOTSUP / VEIL_EFORMAT as veil_model_load(). */
int veil_engine_open(const char *path, const struct veil_engine_params *p,
		     struct veil_engine **out);
/* As above with a loaded model and tokenizer, which the engine takes over
 * (freed by veil_engine_free, also when this fails). */
int veil_engine_new(struct veil_model *m, struct veil_tok *tok,
		    const struct veil_engine_params *p, struct veil_engine **out);
/* Stops the engine thread; requests still queued or running get their
 * final event (VEIL_FINISH_CANCELLED) before it returns.  NULL is a no-op. */
void veil_engine_free(struct veil_engine *e);

const struct veil_model *veil_engine_model(const struct veil_engine *e);
const struct veil_tok *veil_engine_tok(const struct veil_engine *e);
const struct veil_ctx *veil_engine_ctx(const struct veil_engine *e);
int32_t veil_engine_n_ctx(const struct veil_engine *e);
int veil_engine_n_threads(const struct veil_engine *e);

/* Queues a request; *id (optional) names it for veil_engine_cancel().
 * VEIL_EBUSY when max_queue requests are already waiting; VEIL_EINVAL for
 * bad sampling parameters, stops, n_logprobs or token ids; VEIL_ERANGE for a
 * prompt longer than the context.  Thread-safe. */
int veil_engine_submit(struct veil_engine *e, const struct veil_engine_request *r,
		       uint64_t *id);

/* Asks for request `id` to stop: it gets its final event (CANCELLED) and
 * frees its slot at the next step.  Thread-safe, callable from callbacks.
 * VEIL_ENOENT when the id is unknown or already finished. */
int veil_engine_cancel(struct veil_engine *e, uint64_t id);

/* Synchronous convenience: submits r (whose callback still receives every
 * event, on the engine thread) and waits for its final event.  *finish and
 * *usage (optional) get the outcome.  VEIL_EBUSY as submit (nothing was
 * generated).  Must not be called from a callback. */
int veil_engine_generate(struct veil_engine *e, const struct veil_engine_request *r,
			 enum veil_finish *finish, struct veil_engine_usage *usage);

struct veil_engine_stats {
	int32_t active;          /* requests in slots */
	int32_t queued;          /* requests waiting */
	uint64_t steps;          /* forward steps run */
	uint64_t prompt_tokens;  /* tokens prefilled */
	uint64_t gen_tokens;     /* tokens sampled */
};

void veil_engine_get_stats(struct veil_engine *e, struct veil_engine_stats *s);

#endif
