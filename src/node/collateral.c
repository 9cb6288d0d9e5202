/* DCAP collateral for the node's own quotes (--pccs, --pccs-cache;
 * docs/operations.md): the node's side of the library's background fetcher
 * (src/lib/attest/pccs_fetcher.c, include/veil/pccs.h), which veil-gateway
 * shares.  There: why the collateral goes into every report, why the fetch
 * runs on a thread of its own and reports never wait for it, the schedule,
 * the logging and a shutdown that never waits for a slow server.  Here:
 * what to fetch for (the quote in the report made at start) and which
 * --pccs applies to the node's TEE. */
#include <stdlib.h>
#include <string.h>

#include "veil/pccs.h"

#include "node.h"

int node_collateral_start(struct node *n, const char *kind)
{
	struct veil_pccs_fetcher_opts fo = {0};
	const char *qhex = json_string_value(json_object_get(n->cached_report, "quote"));
	uint8_t *quote = NULL;
	size_t qlen = 0, cap;
	int rc;

	if (!(fo.base_url = veil_pccs_fetcher_base(n->o.pccs, kind, NODE_MOD)))
		return 0;
	if (!qhex) {
		rc = veil_errf(VEIL_EINTERNAL, "collateral: the report has no quote");
		goto fail;
	}
	cap = strlen(qhex) / 2 + 1;
	if (!(quote = malloc(cap))) {
		rc = VEIL_ENOMEM;
		goto fail;
	}
	if ((rc = veil_hex_decode(qhex, strlen(qhex), quote, cap, &qlen)) < 0)
		goto fail;
	fo.quote = quote;
	fo.quote_len = qlen;
	fo.cache_dir = n->o.pccs_cache;
	fo.log_mod = NODE_MOD;
	if ((rc = veil_pccs_fetcher_start(&fo, &n->coll)) < 0)
		goto fail;
	free(quote);
	/* the report made at start has none yet (with the sim: not its own) */
	veil_pccs_fetcher_apply(n->coll, n->cached_report, &n->cached_coll);
	return 0;
fail:
	free(quote);
	VEIL_ERROR(NODE_MOD, "collateral: %s (%s)", veil_strerror(rc), veil_err_detail());
	return rc;
}

uint64_t node_collateral_stamp(const struct node *n)
{
	return veil_pccs_fetcher_stamp(n->coll);
}

int node_collateral_apply(struct node *n, json_t *report, uint64_t *stamp)
{
	return veil_pccs_fetcher_apply(n->coll, report, stamp);
}

void node_collateral_metrics(const struct node *n, struct veil_buf *b)
{
	veil_pccs_fetcher_metrics(n->coll, "veil_node", b);
}

void node_collateral_stop(struct node *n)
{
	struct veil_pccs_fetcher *f = n->coll;

	n->coll = NULL;
	veil_pccs_fetcher_stop(f);
}
