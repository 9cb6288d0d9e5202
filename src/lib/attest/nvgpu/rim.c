/* NVIDIA RIM (ISO/IEC 19770-2 SWID tag with TCG RIM attributes) scanner.
 *
 * Only what the comparison needs is read: Meta@product/@colloquialVersion
 * and, for each <Resource type="Measurement">, @index, @active,
 * @alternatives and @Hash0..@Hash{alternatives-1} (any namespace prefix).
 * This is a bounded tag/attribute scanner over (xml, n), not an XML parser:
 * entities, CDATA and DOCTYPE are refused rather than interpreted.
 *
 * No signature is checked here.  veil_nvgpu_rim_load() (rim_sig.c) verifies
 * the enveloped XML-DSig first and runs this scanner over the exact bytes
 * the signature's digest covers (the canonical form), never over the input
 * itself; golden values scanned directly from a file (veil_nvgpu_rim_parse)
 * are only as trustworthy as where the caller got it, and verdicts say so
 * (checks.rim_signature = null). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvgpu_internal.h"

#define MAX_ATTRS 48

struct attr {
	const char *name; /* local name (prefix stripped) */
	size_t name_len;
	const char *val;
	size_t val_len;
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool name_eq(const char *s, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(s, want, n) == 0;
}

/* Strips a "prefix:" from a qualified name. */
static void local_name(const char **s, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		if ((*s)[i] == ':') {
			*s += i + 1;
			*n -= i + 1;
			return;
		}
}

static const struct attr *find_attr(const struct attr *a, size_t na, const char *name)
{
	for (size_t i = 0; i < na; i++)
		if (name_eq(a[i].name, a[i].name_len, name))
			return &a[i];
	return NULL;
}

static int attr_copy(const struct attr *a, char *out, size_t cap, const char *what)
{
	if (a->val_len >= cap)
		return veil_errf(VEIL_EFORMAT, "RIM %s: %zu bytes exceeds %zu", what, a->val_len,
				 cap - 1);
	memcpy(out, a->val, a->val_len);
	out[a->val_len] = '\0';
	return 0;
}

static int attr_uint(const struct attr *a, unsigned max, unsigned *out, const char *what)
{
	unsigned v = 0;

	if (a->val_len == 0 || a->val_len > 6)
		return veil_errf(VEIL_EFORMAT, "RIM %s: not a small number", what);
	for (size_t i = 0; i < a->val_len; i++) {
		if (a->val[i] < '0' || a->val[i] > '9')
			return veil_errf(VEIL_EFORMAT, "RIM %s: not a number", what);
		v = v * 10 + (unsigned)(a->val[i] - '0');
	}
	if (v > max)
		return veil_errf(VEIL_ERANGE, "RIM %s: %u exceeds %u", what, v, max);
	*out = v;
	return 0;
}

static int on_resource(struct veil_nvgpu_rim *rim, const struct attr *a, size_t na)
{
	const struct attr *type = find_attr(a, na, "type"), *x;
	struct veil_nvgpu_rim_entry *e;
	unsigned idx, alts = 1;
	int rc;

	if (!type || !name_eq(type->val, type->val_len, "Measurement"))
		return 0;
	if (!(x = find_attr(a, na, "index")))
		return veil_errf(VEIL_EFORMAT, "RIM Resource %zu: no index", rim->n);
	if ((rc = attr_uint(x, VEIL_NVGPU_MAX_BLOCKS - 1, &idx, "Resource index")) < 0)
		return rc;
	if ((x = find_attr(a, na, "alternatives")) &&
	    (rc = attr_uint(x, VEIL_NVGPU_RIM_MAX_ALT, &alts, "Resource alternatives")) < 0)
		return rc;
	if (alts == 0)
		return veil_errf(VEIL_EFORMAT, "RIM Resource index %u: 0 alternatives", idx);
	for (size_t i = 0; i < rim->n; i++)
		if (rim->e[i].index == idx)
			return veil_errf(VEIL_EFORMAT, "RIM Resource index %u: duplicate", idx);
	if (rim->n == VEIL_NVGPU_MAX_BLOCKS)
		return veil_errf(VEIL_ERANGE, "RIM: more than %d measurements",
				 VEIL_NVGPU_MAX_BLOCKS);
	e = &rim->e[rim->n];
	memset(e, 0, sizeof(*e));
	e->index = (uint16_t)idx;
	x = find_attr(a, na, "active");
	e->active = x && (name_eq(x->val, x->val_len, "True") || name_eq(x->val, x->val_len, "true"));
	for (unsigned k = 0; k < alts; k++) {
		char hn[16];
		size_t got;

		snprintf(hn, sizeof(hn), "Hash%u", k);
		if (!(x = find_attr(a, na, hn)))
			return veil_errf(VEIL_EFORMAT, "RIM Resource index %u: no %s", idx, hn);
		if (x->val_len == 0 || x->val_len > 128 ||
		    veil_hex_decode(x->val, x->val_len, e->hash[k], sizeof(e->hash[k]), &got) < 0)
			return veil_errf(VEIL_EFORMAT, "RIM Resource index %u: %s is not hex", idx,
					 hn);
		if (k > 0 && got != e->len)
			return veil_errf(VEIL_EFORMAT, "RIM Resource index %u: hash lengths differ",
					 idx);
		e->len = (uint8_t)got;
	}
	e->n_alt = (uint8_t)alts;
	rim->n++;
	return 0;
}

/* Parses the attributes of a start tag in [s, end); *na set. */
static int parse_attrs(const char *s, const char *end, struct attr *a, size_t *na)
{
	size_t n = 0;

	for (;;) {
		const char *nm;
		char q;

		while (s < end && is_space(*s))
			s++;
		if (s >= end || *s == '/')
			break;
		nm = s;
		while (s < end && *s != '=' && !is_space(*s) && *s != '/')
			s++;
		if (s >= end || *s != '=' || s == nm)
			return veil_errf(VEIL_EFORMAT, "RIM: malformed attribute");
		if (n == MAX_ATTRS)
			return veil_errf(VEIL_ERANGE, "RIM: more than %d attributes", MAX_ATTRS);
		a[n].name = nm;
		a[n].name_len = (size_t)(s - nm);
		local_name(&a[n].name, &a[n].name_len);
		s++;
		if (s >= end || (*s != '"' && *s != '\''))
			return veil_errf(VEIL_EFORMAT, "RIM: unquoted attribute value");
		q = *s++;
		a[n].val = s;
		while (s < end && *s != q)
			s++;
		if (s >= end)
			return veil_errf(VEIL_EFORMAT, "RIM: unterminated attribute value");
		a[n].val_len = (size_t)(s - a[n].val);
		if (memchr(a[n].val, '&', a[n].val_len))
			return veil_errf(VEIL_ENOTSUP, "RIM: entity references are not supported");
		s++;
		n++;
	}
	*na = n;
	return 0;
}

int veil_nvgpu_rim_parse(const char *xml, size_t n, struct veil_nvgpu_rim *out)
{
	struct veil_nvgpu_rim *rim;
	struct attr *attrs;
	const char *s = xml, *end = xml + n;
	bool seen_root = false;
	int rc = 0;

	if (!xml || !out)
		return veil_errf(VEIL_EINVAL, "RIM: NULL argument");
	rim = calloc(1, sizeof(*rim));
	attrs = calloc(MAX_ATTRS, sizeof(*attrs));
	if (!rim || !attrs) {
		rc = VEIL_ENOMEM;
		goto out;
	}
	while (s < end) {
		const char *lt = memchr(s, '<', (size_t)(end - s)), *gt, *nm, *p;
		size_t nl, na = 0;
		char q = 0;

		if (!lt)
			break;
		p = lt + 1;
		if (p < end && *p == '?') {
			/* a processing instruction may hold '>' (XML 1.0 §2.6) */
			gt = memmem(p, (size_t)(end - p), "?>", 2);
			if (!gt) {
				rc = veil_errf(VEIL_EFORMAT, "RIM: unterminated processing instruction");
				goto out;
			}
			s = gt + 2;
			continue;
		}
		if (p < end && *p == '/') {
			gt = memchr(p, '>', (size_t)(end - p));
			if (!gt) {
				rc = veil_errf(VEIL_EFORMAT, "RIM: unterminated tag");
				goto out;
			}
			s = gt + 1;
			continue;
		}
		if (p < end && *p == '!') {
			if (end - p >= 3 && p[1] == '-' && p[2] == '-') {
				const char *c = memmem(p + 3, (size_t)(end - p - 3), "-->", 3);

				if (!c) {
					rc = veil_errf(VEIL_EFORMAT, "RIM: unterminated comment");
					goto out;
				}
				s = c + 3;
				continue;
			}
			rc = veil_errf(VEIL_ENOTSUP, "RIM: DOCTYPE/CDATA is not supported");
			goto out;
		}
		/* the end of this tag, skipping quoted '>' */
		for (gt = p; gt < end; gt++) {
			if (q) {
				if (*gt == q)
					q = 0;
			} else if (*gt == '"' || *gt == '\'') {
				q = *gt;
			} else if (*gt == '>') {
				break;
			}
		}
		if (gt >= end) {
			rc = veil_errf(VEIL_EFORMAT, "RIM: unterminated tag");
			goto out;
		}
		nm = p;
		while (p < gt && !is_space(*p) && *p != '/')
			p++;
		nl = (size_t)(p - nm);
		local_name(&nm, &nl);
		if ((rc = parse_attrs(p, gt, attrs, &na)) < 0)
			goto out;
		if (!seen_root) {
			if (!name_eq(nm, nl, "SoftwareIdentity")) {
				rc = veil_errf(VEIL_EFORMAT, "RIM: root element is not SoftwareIdentity");
				goto out;
			}
			seen_root = true;
		} else if (name_eq(nm, nl, "Meta")) {
			const struct attr *a;

			if ((a = find_attr(attrs, na, "product")) &&
			    (rc = attr_copy(a, rim->product, sizeof(rim->product), "product")) < 0)
				goto out;
			if ((a = find_attr(attrs, na, "colloquialVersion")) &&
			    (rc = attr_copy(a, rim->version, sizeof(rim->version),
					    "colloquialVersion")) < 0)
				goto out;
		} else if (name_eq(nm, nl, "Resource")) {
			if ((rc = on_resource(rim, attrs, na)) < 0)
				goto out;
		} else if (name_eq(nm, nl, "Signature")) {
			rim->signed_ = true;
		}
		s = gt + 1;
	}
	if (!seen_root) {
		rc = veil_errf(VEIL_EFORMAT, "RIM: no SoftwareIdentity element");
		goto out;
	}
	if (rim->n == 0) {
		rc = veil_errf(VEIL_EFORMAT, "RIM: no measurements");
		goto out;
	}
	memcpy(out, rim, sizeof(*rim));
	rc = 0;
out:
	free(attrs);
	free(rim);
	return rc;
}
