/* libFuzzer harness for the admin API bodies and query values of
 * veil-gateway (src/gateway/parse.c, compiled in): POST /admin/nodes
 * (gw_parse_node_body), POST /admin/keys and .../limits
 * (gw_parse_key_body), ?from=/?to= (gw_parse_time) and node URLs
 * (gw_url_check).  Byte 0 picks the parser; accepted values must satisfy
 * the invariants the handlers rely on. */
#include <stdlib.h>
#include <string.h>

#include "../../src/gateway/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define CHECK(c)                                                               \
	do {                                                                   \
		if (!(c))                                                      \
			abort();                                               \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	uint8_t sel;

	if (n == 0)
		return 0;
	sel = p[0] % 5;
	p++;
	n--;
	if (sel == 0) {
		struct gw_node_spec s;

		if (gw_parse_node_body(p, n, &s) == 0) {
			CHECK(!s.id[0] || gw_node_id_valid(s.id));
			CHECK(gw_model_valid(s.model, strlen(s.model)));
			CHECK(!strncmp(s.url, "http://", 7) || !strncmp(s.url, "https://", 8));
		}
	} else if (sel == 1 || sel == 2) {
		char name[VEIL_STORE_NAME_MAX + 1];
		struct veil_store_limits l;
		bool hl;

		memset(name, 'Z', sizeof(name));
		if (gw_parse_key_body(p, n, sel == 1 ? name : NULL, sel == 1 ? sizeof(name) : 0,
				      &l, &hl) == 0) {
			/* a limits body alone (sel 2) leaves a field not given
			 * at -1: the key keeps its value for it */
			int64_t lo = sel == 1 ? 0 : -1;

			CHECK(l.requests_per_min >= lo && l.tokens_per_min >= lo &&
			      l.quota_tokens >= lo);
			if (sel == 1)
				CHECK(memchr(name, 0, sizeof(name)) && strlen(name) >= 1);
		}
	} else if (sel == 3) {
		char s[64];
		int64_t ms;

		if (n >= sizeof(s))
			return 0;
		memcpy(s, p, n);
		s[n] = '\0';
		if (gw_parse_time(s, &ms) == 0)
			CHECK(ms >= 0 && ms <= ((int64_t)1 << 40) * 1000);
	} else {
		char out[VEIL_STORE_URL_MAX + 1];
		bool https;

		if (gw_url_check((const char *)p, n, out, sizeof(out), &https) == 0) {
			size_t l = strlen(out);

			CHECK(l <= n && l >= 8 && out[l - 1] != '/');
			CHECK(https ? !strncmp(out, "https://", 8) : !strncmp(out, "http://", 7));
		}
	}
	return 0;
}
