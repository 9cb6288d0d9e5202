/* Continuous-batching scheduler over one model.  See include/veil/engine.h.
 *
 * Locking: e->mu guards the queue, the slot table's request pointers, the
 * id counter and the stop flag.  Everything else a slot holds (sampler,
 * stopper, positions) belongs to the engine thread.  Callbacks run with no
 * lock held. */
#include "veil/engine.h"
#include "veil/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MOD "engine"
#define PIECE_MAX 4096
#define EMIT_MAX (1u << 20)

struct req {
	uint64_t id;
	int32_t *prompt;
	int32_t n_prompt;
	int32_t max_tokens;
	int n_logprobs;
	veil_engine_cb cb;
	void *user;
	/* The sampler (vocabulary-sized scratch) is made when the request
	 * first needs it, not while it waits in the queue: thousands of queued
	 * streams must stay cheap. */
	struct veil_sampler_params sampling;
	struct veil_sampler *smp;
	struct veil_stopper *stop;
	_Atomic bool cancel;
	struct req *next;            /* queue link */
};

struct slot {
	struct req *r;               /* NULL when free */
	int32_t n_past;              /* positions in the cache */
	int32_t n_fed;               /* prompt tokens fed */
	int32_t n_gen;
	int32_t last;                /* sampled token to feed, -1 while prefilling */
	int32_t out_row;             /* logits row in this step, -1 if none */
	/* this step's sample, made on a pool thread (sample_one) */
	int rc;
	struct veil_logprob chosen;
	struct veil_logprob top[VEIL_ENGINE_MAX_LOGPROBS];
};

struct veil_engine {
	struct veil_model *m;
	struct veil_tok *tok;
	struct veil_ctx *ctx;
	struct veil_pool *pool;      /* the context's, and the samplers' */
	struct veil_engine_params p;
	int32_t n_vocab;

	pthread_t th;
	bool th_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	uint64_t next_id;
	struct req *q_head, *q_tail;
	int32_t n_queued;
	struct slot *slots;
	int32_t n_active;
	int32_t rr;                  /* prefill round-robin start */

	/* engine-thread scratch */
	int32_t *b_tok, *b_pos, *b_seq;
	bool *b_logits;
	int32_t *to_sample;          /* slots with logits this step */
	char piece[PIECE_MAX];
	struct veil_buf emit;

	_Atomic uint64_t st_steps, st_prompt, st_gen;
};

const char *veil_finish_name(enum veil_finish f)
{
	switch (f) {
	case VEIL_FINISH_STOP:
		return "stop";
	case VEIL_FINISH_LENGTH:
		return "length";
	case VEIL_FINISH_CANCELLED:
		return "cancelled";
	case VEIL_FINISH_ERROR:
		return "error";
	default:
		return NULL;
	}
}

void veil_engine_params_default(struct veil_engine_params *p)
{
	*p = (struct veil_engine_params){0};
}

static void req_free(struct req *r)
{
	if (!r)
		return;
	veil_sampler_free(r->smp);
	veil_stopper_free(r->stop);
	if (r->prompt)
		veil_wipe(r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
	free(r->prompt);
	free(r);
}

/* ---- events ------------------------------------------------------------ */

static void send_final(struct veil_engine *e, struct req *r, int32_t n_gen,
		       enum veil_finish f, int err)
{
	struct veil_engine_event ev = {
		.id = r->id, .token = -1, .text = "", .finish = f, .error = err,
		.chosen = {-1, 0.0f},
		.usage = {r->n_prompt, n_gen},
	};

	veil_buf_reset(&e->emit);
	if (f != VEIL_FINISH_CANCELLED && f != VEIL_FINISH_ERROR &&
	    veil_stopper_flush(r->stop, &e->emit) == 0 && e->emit.len) {
		ev.text = (const char *)e->emit.data;
		ev.text_len = e->emit.len;
	}
	r->cb(&ev, r->user);
}

/* Takes the request out of its slot (engine thread), before its final
 * event: once a caller has seen the final event, cancel() finds nothing. */
static struct req *detach(struct veil_engine *e, struct slot *s)
{
	struct req *r = s->r;

	pthread_mutex_lock(&e->mu);
	s->r = NULL;
	e->n_active--;
	pthread_mutex_unlock(&e->mu);
	return r;
}

/* Sends the final event of the request in slot s and frees both. */
static void retire(struct veil_engine *e, struct slot *s, enum veil_finish f, int err)
{
	int32_t n_gen = s->n_gen;
	struct req *r = detach(e, s);

	send_final(e, r, n_gen, f, err);
	req_free(r);
}

/* Samples slot s's next token from its logits row into s->rc, s->chosen
 * and s->top.  Touches nothing but the slot and its request's sampler, so
 * the slots of a step are sampled in parallel on the pool. */
static void sample_one(struct veil_engine *e, struct slot *s)
{
	struct req *r = s->r;
	float *logits = veil_ctx_logits(e->ctx, s->out_row);
	int rc;

	if (!r->smp) {
		if ((rc = veil_sampler_new(&r->sampling, e->n_vocab, &r->smp)) < 0)
			goto out;
		for (int32_t i = 0; i < r->n_prompt; i++)
			veil_sampler_accept(r->smp, r->prompt[i]);
	}
	if (r->n_logprobs > 0) {
		rc = veil_sampler_sample(r->smp, logits, &s->chosen, s->top,
					 r->n_logprobs);
	} else {
		/* no log-softmax when nobody reads the logprob */
		s->chosen.logprob = 0.0f;
		rc = veil_sampler_pick(r->smp, logits, &s->chosen.id);
	}
out:
	s->rc = rc;
}

static void sample_job(void *arg, int64_t begin, int64_t end, int tid)
{
	struct veil_engine *e = arg;

	(void)tid;
	for (int64_t k = begin; k < end; k++)
		sample_one(e, &e->slots[e->to_sample[k]]);
}

/* Handles slot s's sample (sample_one): feed the stopper, call back,
 * retire when finished. */
static void on_sample(struct veil_engine *e, struct slot *s)
{
	struct req *r = s->r;
	struct veil_engine_event ev = {.id = r->id, .text = ""};
	bool stopped = false;
	int rc;

	if (s->rc < 0) {
		retire(e, s, VEIL_FINISH_ERROR, s->rc);
		return;
	}
	ev.chosen = s->chosen;
	ev.token = ev.chosen.id;
	ev.top = s->top;
	ev.n_top = r->n_logprobs;
	veil_sampler_accept(r->smp, ev.token);
	s->n_gen++;
	atomic_fetch_add_explicit(&e->st_gen, 1, memory_order_relaxed);
	veil_buf_reset(&e->emit);
	if (veil_tok_is_eog(e->tok, ev.token)) {
		ev.finish = VEIL_FINISH_STOP;
	} else {
		int n = veil_tok_piece(e->tok, ev.token, false, e->piece, PIECE_MAX);

		if (n < 0)
			n = 0;
		rc = veil_stopper_feed(r->stop, e->piece, (size_t)n, &e->emit, &stopped);
		if (rc < 0) {
			ev.finish = VEIL_FINISH_ERROR;
			ev.error = rc;
		} else if (stopped) {
			ev.finish = VEIL_FINISH_STOP;
		} else if (r->max_tokens > 0 && s->n_gen >= r->max_tokens) {
			ev.finish = VEIL_FINISH_LENGTH;
		} else if (s->n_past >= veil_ctx_n_ctx(e->ctx)) {
			ev.finish = VEIL_FINISH_LENGTH;
		}
	}
	if (ev.finish == VEIL_FINISH_STOP || ev.finish == VEIL_FINISH_LENGTH)
		veil_stopper_flush(r->stop, &e->emit);
	if (e->emit.len) {
		ev.text = (const char *)e->emit.data;
		ev.text_len = e->emit.len;
	}
	ev.usage = (struct veil_engine_usage){r->n_prompt, s->n_gen};
	if (ev.finish != VEIL_FINISH_NONE) {
		detach(e, s);
		r->cb(&ev, r->user);
		req_free(r);
		return;
	}
	r->cb(&ev, r->user);
	s->last = ev.token;
}

/* ---- the engine thread ------------------------------------------------- */

/* Moves queued requests into free slots (called with mu held); returns
 * requests cancelled while queued in *dead for the caller to finish. */
static void admit(struct veil_engine *e, struct req **dead)
{
	struct req **pp = &e->q_head, *last = NULL;

	/* requests cancelled while waiting leave the queue at once */
	while (*pp) {
		struct req *r = *pp;

		if (atomic_load(&r->cancel)) {
			*pp = r->next;
			e->n_queued--;
			r->next = *dead;
			*dead = r;
			continue;
		}
		last = r;
		pp = &r->next;
	}
	e->q_tail = last;
	for (int32_t i = 0; i < e->p.max_batch && e->q_head; i++) {
		struct slot *s = &e->slots[i];
		struct req *r;

		if (s->r)
			continue;
		r = e->q_head;
		e->q_head = r->next;
		if (!e->q_head)
			e->q_tail = NULL;
		e->n_queued--;
		r->next = NULL;
		*s = (struct slot){.r = r, .last = -1, .out_row = -1};
		e->n_active++;
	}
}

static void step(struct veil_engine *e)
{
	int32_t n = 0, n_out = 0, budget, ms = e->p.max_batch;
	struct veil_batch b;
	int rc;

	/* cancellations first: they free slots for this very step */
	for (int32_t i = 0; i < ms; i++) {
		struct slot *s = &e->slots[i];

		if (s->r && atomic_load(&s->r->cancel))
			retire(e, s, VEIL_FINISH_CANCELLED, 0);
	}
	/* one token for every generating sequence */
	for (int32_t i = 0; i < ms; i++) {
		struct slot *s = &e->slots[i];

		s->out_row = -1;
		if (!s->r || s->last < 0)
			continue;
		e->b_tok[n] = s->last;
		e->b_pos[n] = s->n_past++;
		e->b_seq[n] = i;
		e->b_logits[n] = true;
		s->out_row = n_out++;
		n++;
	}
	/* prompt chunks with what is left, round-robin over the slots */
	budget = e->p.step_tokens - n;
	for (int32_t k = 0; k < ms && budget > 0; k++) {
		int32_t i = (e->rr + k) % ms, take;
		struct slot *s = &e->slots[i];

		if (!s->r || s->last >= 0)
			continue;
		take = VEIL_MIN(budget, s->r->n_prompt - s->n_fed);
		for (int32_t j = 0; j < take; j++) {
			e->b_tok[n] = s->r->prompt[s->n_fed++];
			e->b_pos[n] = s->n_past++;
			e->b_seq[n] = i;
			e->b_logits[n] = false;
			n++;
		}
		budget -= take;
		if (s->n_fed == s->r->n_prompt) {
			e->b_logits[n - 1] = true;
			s->out_row = n_out++;
		}
		atomic_fetch_add_explicit(&e->st_prompt, (uint64_t)take,
					  memory_order_relaxed);
	}
	e->rr = (e->rr + 1) % ms;
	if (n == 0)
		return;
	b = (struct veil_batch){n, e->b_tok, e->b_pos, e->b_seq, e->b_logits};
	rc = veil_ctx_decode(e->ctx, &b);
	atomic_fetch_add_explicit(&e->st_steps, 1, memory_order_relaxed);
	if (rc < 0) {
		VEIL_ERROR(MOD, "forward step failed: %s: %s", veil_strerror(rc),
			   veil_err_detail());
		/* the caches of every sequence in the batch are now suspect */
		for (int32_t i = 0; i < ms; i++)
			if (e->slots[i].r)
				retire(e, &e->slots[i], VEIL_FINISH_ERROR, rc);
		return;
	}
	/* sample every sequence at once, then call back in slot order */
	n_out = 0;
	for (int32_t i = 0; i < ms; i++)
		if (e->slots[i].r && e->slots[i].out_row >= 0)
			e->to_sample[n_out++] = i;
	veil_pool_for(e->pool, n_out, 1, sample_job, e);
	for (int32_t k = 0; k < n_out; k++)
		on_sample(e, &e->slots[e->to_sample[k]]);
}

static void *engine_main(void *v)
{
	struct veil_engine *e = v;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct req *dead = NULL;

		while (!e->stop && !e->n_active && !e->q_head)
			pthread_cond_wait(&e->cv, &e->mu);
		if (e->stop)
			break;
		admit(e, &dead);
		pthread_mutex_unlock(&e->mu);
		while (dead) {
			struct req *r = dead;

			dead = r->next;
			send_final(e, r, 0, VEIL_FINISH_CANCELLED, 0);
			req_free(r);
		}
		step(e);
		pthread_mutex_lock(&e->mu);
	}
	/* shutdown: everyone gets a final event */
	while (e->q_head) {
		struct req *r = e->q_head;

		e->q_head = r->next;
		e->n_queued--;
		pthread_mutex_unlock(&e->mu);
		send_final(e, r, 0, VEIL_FINISH_CANCELLED, 0);
		req_free(r);
		pthread_mutex_lock(&e->mu);
	}
	e->q_tail = NULL;
	pthread_mutex_unlock(&e->mu);
	for (int32_t i = 0; i < e->p.max_batch; i++)
		if (e->slots[i].r)
			retire(e, &e->slots[i], VEIL_FINISH_CANCELLED, 0);
	return NULL;
}

/* ---- public ------------------------------------------------------------ */

int veil_engine_new(struct veil_model *m, struct veil_tok *tok,
		    const struct veil_engine_params *p, struct veil_engine **out)
{
	struct veil_engine *e = calloc(1, sizeof(*e));
	struct veil_ctx_params cp;
	size_t B;
	int rc;

	if (!e) {
		veil_model_free(m);
		veil_tok_free(tok);
		return VEIL_ENOMEM;
	}
	e->m = m;
	e->tok = tok;
	e->p = *p;
	if (e->p.max_batch <= 0)
		e->p.max_batch = 8;
	if (e->p.max_queue <= 0)
		e->p.max_queue = 64;
	if (e->p.step_tokens <= 0)
		e->p.step_tokens = 512;
	e->p.step_tokens = VEIL_MAX(e->p.step_tokens, e->p.max_batch);
	e->n_vocab = veil_model_hparams(m)->n_vocab;
	e->next_id = 1;
	e->emit = (struct veil_buf)VEIL_BUF_INIT(EMIT_MAX);
	e->emit.secret = true;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	if (veil_tok_n_vocab(tok) > e->n_vocab) {
		rc = veil_errf(VEIL_EFORMAT, "engine: tokenizer has %d tokens, model %d",
			       veil_tok_n_vocab(tok), e->n_vocab);
		goto fail;
	}
	if ((rc = veil_pool_new(e->p.n_threads, &e->pool)) < 0)
		goto fail;
	veil_ctx_params_default(&cp);
	cp.n_ctx = e->p.n_ctx;
	cp.n_seq = e->p.max_batch;
	cp.n_batch = e->p.step_tokens;
	cp.n_outputs = e->p.max_batch;
	cp.n_threads = e->p.n_threads;
	cp.pool = e->pool;
	cp.populate = !e->p.lazy_kv;
	if ((rc = veil_ctx_new(m, &cp, &e->ctx)) < 0)
		goto fail;
	e->p.n_ctx = veil_ctx_n_ctx(e->ctx);
	B = (size_t)e->p.step_tokens;
	e->slots = calloc((size_t)e->p.max_batch, sizeof(*e->slots));
	e->b_tok = calloc(B, sizeof(int32_t));
	e->b_pos = calloc(B, sizeof(int32_t));
	e->b_seq = calloc(B, sizeof(int32_t));
	e->b_logits = calloc(B, sizeof(bool));
	e->to_sample = calloc((size_t)e->p.max_batch, sizeof(int32_t));
	if (!e->slots || !e->b_tok || !e->b_pos || !e->b_seq || !e->b_logits ||
	    !e->to_sample) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	if (pthread_create(&e->th, NULL, engine_main, e) != 0) {
		rc = veil_errf(VEIL_ENOMEM, "engine: cannot start its thread");
		goto fail;
	}
	e->th_started = true;
	*out = e;
	return 0;
fail:
	veil_engine_free(e);
	return rc;
}

int veil_engine_open(const char *path, const struct veil_engine_params *p,
		     struct veil_engine **out)
{
	struct veil_model *m;
	struct veil_tok *tok;
	int rc;

	if ((rc = veil_model_load(path, &m)) < 0)
		return rc;
	if ((rc = veil_tok_load(veil_model_gguf(m), &tok)) < 0) {
		veil_model_free(m);
		return rc;
	}
	return veil_engine_new(m, tok, p, out);
}

void veil_engine_free(struct veil_engine *e)
{
	if (!e)
		return;
	if (e->th_started) {
		pthread_mutex_lock(&e->mu);
		e->stop = true;
		pthread_cond_broadcast(&e->cv);
		pthread_mutex_unlock(&e->mu);
		pthread_join(e->th, NULL);
	}
	free(e->slots);
	free(e->b_tok);
	free(e->b_pos);
	free(e->b_seq);
	free(e->b_logits);
	free(e->to_sample);
	veil_buf_free(&e->emit);
	veil_wipe(e->piece, sizeof(e->piece));
	veil_ctx_free(e->ctx);
	veil_pool_free(e->pool);
	veil_tok_free(e->tok);
	veil_model_free(e->m);
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

const struct veil_model *veil_engine_model(const struct veil_engine *e)
{
	return e->m;
}

const struct veil_tok *veil_engine_tok(const struct veil_engine *e)
{
	return e->tok;
}

const struct veil_ctx *veil_engine_ctx(const struct veil_engine *e)
{
	return e->ctx;
}

int32_t veil_engine_n_ctx(const struct veil_engine *e)
{
	return e->p.n_ctx;
}

int veil_engine_n_threads(const struct veil_engine *e)
{
	return veil_ctx_n_threads(e->ctx);
}

int veil_engine_submit(struct veil_engine *e, const struct veil_engine_request *rq,
		       uint64_t *id)
{
	struct req *r;
	int rc;

	if (!rq || !rq->cb || !rq->prompt || rq->n_prompt == 0)
		return veil_errf(VEIL_EINVAL, "engine: request needs a callback and "
				 "a non-empty prompt");
	if (rq->n_prompt > (size_t)e->p.n_ctx)
		return veil_errf(VEIL_ERANGE, "engine: prompt of %zu tokens exceeds "
				 "the context of %d", rq->n_prompt, e->p.n_ctx);
	if (rq->n_logprobs < 0 || rq->n_logprobs > VEIL_ENGINE_MAX_LOGPROBS)
		return veil_errf(VEIL_EINVAL, "engine: n_logprobs %d not in 0..%d",
				 rq->n_logprobs, VEIL_ENGINE_MAX_LOGPROBS);
	for (size_t i = 0; i < rq->n_prompt; i++)
		if (rq->prompt[i] < 0 || rq->prompt[i] >= e->n_vocab)
			return veil_errf(VEIL_EINVAL, "engine: prompt token %d out of "
					 "range", rq->prompt[i]);
	if (!(r = calloc(1, sizeof(*r))))
		return VEIL_ENOMEM;
	r->n_prompt = (int32_t)rq->n_prompt;
	r->max_tokens = rq->max_tokens;
	/* a vocabulary smaller than the number asked for gives all of it */
	r->n_logprobs = VEIL_MIN(rq->n_logprobs, e->n_vocab);
	r->cb = rq->cb;
	r->user = rq->user;
	atomic_init(&r->cancel, false);
	if (!(r->prompt = malloc(rq->n_prompt * sizeof(int32_t)))) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	memcpy(r->prompt, rq->prompt, rq->n_prompt * sizeof(int32_t));
	r->sampling = rq->sampling;
	if ((rc = veil_sampler_params_check(&rq->sampling)) < 0 ||
	    (rc = veil_stopper_new(rq->stops, rq->n_stops, &r->stop)) < 0)
		goto fail;

	pthread_mutex_lock(&e->mu);
	if (e->n_queued >= e->p.max_queue || e->stop) {
		pthread_mutex_unlock(&e->mu);
		rc = veil_errf(VEIL_EBUSY, "engine: %d requests already waiting",
			       e->p.max_queue);
		goto fail;
	}
	r->id = e->next_id++;
	if (e->q_tail)
		e->q_tail->next = r;
	else
		e->q_head = r;
	e->q_tail = r;
	e->n_queued++;
	if (id)
		*id = r->id;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return 0;
fail:
	req_free(r);
	return rc;
}

int veil_engine_cancel(struct veil_engine *e, uint64_t id)
{
	int rc = VEIL_ENOENT;

	pthread_mutex_lock(&e->mu);
	for (struct req *r = e->q_head; r; r = r->next)
		if (r->id == id) {
			atomic_store(&r->cancel, true);
			rc = 0;
		}
	for (int32_t i = 0; i < e->p.max_batch && rc; i++)
		if (e->slots[i].r && e->slots[i].r->id == id) {
			atomic_store(&e->slots[i].r->cancel, true);
			rc = 0;
		}
	if (rc == 0)
		pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return rc;
}

struct gen_wait {
	veil_engine_cb cb;
	void *user;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	enum veil_finish finish;
	struct veil_engine_usage usage;
};

static void gen_cb(const struct veil_engine_event *ev, void *user)
{
	struct gen_wait *w = user;

	w->cb(ev, w->user);
	if (ev->finish != VEIL_FINISH_NONE) {
		pthread_mutex_lock(&w->mu);
		w->done = true;
		w->finish = ev->finish;
		w->usage = ev->usage;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
}

int veil_engine_generate(struct veil_engine *e, const struct veil_engine_request *r,
			 enum veil_finish *finish, struct veil_engine_usage *usage)
{
	struct veil_engine_request rq;
	struct gen_wait w = {.cb = r ? r->cb : NULL, .user = r ? r->user : NULL};
	int rc;

	if (!r || !r->cb)
		return veil_errf(VEIL_EINVAL, "engine: request needs a callback");
	rq = *r;
	rq.cb = gen_cb;
	rq.user = &w;
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	if ((rc = veil_engine_submit(e, &rq, NULL)) == 0) {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
		if (finish)
			*finish = w.finish;
		if (usage)
			*usage = w.usage;
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	return rc;
}

void veil_engine_get_stats(struct veil_engine *e, struct veil_engine_stats *s)
{
	pthread_mutex_lock(&e->mu);
	s->active = e->n_active;
	s->queued = e->n_queued;
	pthread_mutex_unlock(&e->mu);
	s->steps = atomic_load(&e->st_steps);
	s->prompt_tokens = atomic_load(&e->st_prompt);
	s->gen_tokens = atomic_load(&e->st_gen);
}
