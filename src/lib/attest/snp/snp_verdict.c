/* JSON rendering of an SEV-SNP verification result. */
#include <stdio.h>

#include <jansson.h>

#include "veil/base.h"
#include "snp_internal.h"

static json_t *hex_json(const uint8_t *p, size_t n)
{
	char buf[2 * 64 + 1];

	if (n > 64 || veil_hex_encode(p, n, buf, sizeof(buf)) < 0)
		return json_null();
	return json_string(buf);
}

static json_t *u64_hex(uint64_t v)
{
	char buf[19];

	snprintf(buf, sizeof(buf), "0x%016llx", (unsigned long long)v);
	return json_string(buf);
}

static json_t *tcb_json(const struct veil_snp_tcb *t, enum veil_snp_product p)
{
	json_t *j = json_pack("{s:o,s:i,s:i,s:i,s:i}", "raw", u64_hex(t->raw), "bootloader",
			      t->bootloader, "tee", t->tee, "snp", t->snp, "microcode",
			      t->microcode);

	if (j && p == VEIL_SNP_PRODUCT_TURIN && json_object_set_new(j, "fmc", json_integer(t->fmc)) < 0) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static const char *status_of(const struct veil_snp_result *r, int rc)
{
	if (rc == 0)
		return "verified";
	if (!r->parsed)
		return "malformed";
	if (rc == VEIL_ENOTSUP && r->signature_ok && !r->chain_checked)
		return "chain_unverifiable";
	if (!r->signature_ok)
		return "signature_invalid";
	if (!r->tcb_ok)
		return "tcb_mismatch";
	if (!r->chip_id_ok)
		return "chip_id_mismatch";
	if (!r->chain_ok)
		return "chain_invalid";
	if (!r->policy_ok)
		return "policy_violation";
	if (!r->report_data_ok)
		return "report_data_mismatch";
	return "rejected";
}

json_t *veil_snp_verdict_json(const struct veil_snp_result *res, int rc)
{
	const struct veil_snp_report *r = &res->report;
	json_t *j = json_object(), *v;
	bool bad = !j;

	if (bad)
		return NULL;
	bad |= json_object_set_new(j, "ok", json_boolean(rc == 0)) < 0;
	bad |= json_object_set_new(j, "kind", json_string("snp")) < 0;
	bad |= json_object_set_new(j, "status", json_string(status_of(res, rc))) < 0;
	bad |= json_object_set_new(j, "advisories", json_array()) < 0;
	bad |= json_object_set_new(j, "error", rc == 0 ? json_null()
					     : json_string(res->error[0] ? res->error
							   : veil_strerror(rc))) < 0;
	if (res->parsed) {
		bad |= json_object_set_new(j, "product",
					   json_string(veil_snp_product_name(res->product))) < 0;
		bad |= json_object_set_new(j, "signer",
					   json_string(res->signer == VEIL_SNP_SIGNER_VLEK ? "vlek"
						       : "vcek")) < 0;
		bad |= json_object_set_new(j, "version", json_integer(r->version)) < 0;
		bad |= json_object_set_new(j, "guest_svn", json_integer(r->guest_svn)) < 0;
		v = json_pack("{s:o,s:b,s:b,s:b,s:b,s:i,s:i}", "raw", u64_hex(r->policy), "debug",
			      (r->policy & VEIL_SNP_POLICY_DEBUG) != 0, "smt",
			      (r->policy & VEIL_SNP_POLICY_SMT) != 0, "migrate_ma",
			      (r->policy & VEIL_SNP_POLICY_MIGRATE_MA) != 0, "single_socket",
			      (r->policy & VEIL_SNP_POLICY_SINGLE_SOCKET) != 0, "abi_major",
			      (int)((r->policy >> 8) & 0xff), "abi_minor", (int)(r->policy & 0xff));
		bad |= !v || json_object_set_new(j, "policy", v) < 0;
		bad |= json_object_set_new(j, "vmpl", json_integer(r->vmpl)) < 0;
		bad |= json_object_set_new(j, "measurement", hex_json(r->measurement, 48)) < 0;
		bad |= json_object_set_new(j, "report_data", hex_json(r->report_data, 64)) < 0;
		bad |= json_object_set_new(j, "host_data", hex_json(r->host_data, 32)) < 0;
		bad |= json_object_set_new(j, "id_key_digest", hex_json(r->id_key_digest, 48)) < 0;
		bad |= json_object_set_new(j, "author_key_digest",
					   hex_json(r->author_key_digest, 48)) < 0;
		bad |= json_object_set_new(j, "family_id", hex_json(r->family_id, 16)) < 0;
		bad |= json_object_set_new(j, "image_id", hex_json(r->image_id, 16)) < 0;
		bad |= json_object_set_new(j, "report_id", hex_json(r->report_id, 32)) < 0;
		bad |= json_object_set_new(j, "chip_id", hex_json(r->chip_id, 64)) < 0;
		bad |= json_object_set_new(j, "platform_info", u64_hex(r->platform_info)) < 0;
		v = tcb_json(&res->reported_tcb, res->product);
		bad |= !v || json_object_set_new(j, "reported_tcb", v) < 0;
		bad |= json_object_set_new(j, "current_tcb", u64_hex(r->current_tcb)) < 0;
		bad |= json_object_set_new(j, "committed_tcb", u64_hex(r->committed_tcb)) < 0;
		bad |= json_object_set_new(j, "launch_tcb", u64_hex(r->launch_tcb)) < 0;
	}
	v = json_pack("{s:b,s:o,s:b,s:b,s:b,s:b}", "signature", res->signature_ok, "chain",
		      res->chain_checked ? json_boolean(res->chain_ok) : json_null(), "tcb",
		      res->tcb_ok, "chip_id", res->chip_id_ok, "policy", res->policy_ok,
		      "report_data", res->report_data_ok);
	bad |= !v || json_object_set_new(j, "checks", v) < 0;
	if (bad) {
		json_decref(j);
		return NULL;
	}
	return j;
}
