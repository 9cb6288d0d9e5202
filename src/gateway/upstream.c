/* veil-gateway's HTTP/1.1 client to its nodes, for the relayed requests:
 * the hconn client of libveil (include/veil/hconn.h — kept-alive pool,
 * TLS pinned to the node's attested key, the request written straight from
 * the caller's bytes, the answer parsed and handed on in place; see its
 * header for why not libcurl, which the health checks and attestation
 * fetches still use).  What is the gateway's here: one pool per node,
 * made on the node's first request; a request goes to the node's present
 * URL and pin (n->url, n->spki), so a pooled connection made under another
 * URL or pin is never reused; a node that failed or changed has its idle
 * connections closed, a removed node keeps none.
 *
 * Threading: the loop thread only. */
#include <stdio.h>

#include "gateway.h"

#define UP_IDLE_MAX 256     /* idle kept-alive connections per node */
#define UP_IDLE_MS 25000    /* below a veil-node's default idle timeout (30 s) */

void gw_up_node_flush(struct gw_node *n)
{
	if (!n->up_pool)
		return;
	if (n->refs == 0) {
		/* the node is being freed: no call of it is left */
		veil_hconn_pool_free(n->up_pool);
		n->up_pool = NULL;
	} else if (n->removed) {
		veil_hconn_pool_close(n->up_pool);
	} else {
		veil_hconn_pool_flush(n->up_pool);
	}
}

int gw_up_init(struct gw *g)
{
	return veil_hconn_new(g->base, &g->up);
}

int gw_up_start(struct gw *g, struct gw_node *n, struct veil_hconn_request *rq,
		struct veil_hconn_call **out)
{
	char label[GW_NODE_ID_MAX + 8];
	int rc;

	if (n->https && !n->have_keys)
		return veil_errf(VEIL_EPERM, "node %s: not verified (no pin)", n->id);
	if (!n->up_pool && (rc = veil_hconn_pool_new(g->up, UP_IDLE_MAX, UP_IDLE_MS,
						     &n->up_pool)) < 0)
		return rc;
	if (n->removed)
		veil_hconn_pool_close(n->up_pool);
	snprintf(label, sizeof(label), "node %s", n->id);
	rq->url = n->url;
	rq->pin = n->https ? n->spki : NULL;
	rq->label = label;
	rq->connect_timeout_ms = g->o.connect_timeout_ms;
	return veil_hconn_start(n->up_pool, rq, out);
}
