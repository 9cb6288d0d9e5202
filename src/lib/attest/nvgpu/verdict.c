/* JSON renderings of an NVIDIA GPU verification result: veil's verdict and
 * trustee-shaped parsed claims. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "nvgpu_internal.h"
#include "veil/x509.h"

static json_t *hex_json(const uint8_t *p, size_t n)
{
	char buf[2 * 256 + 1];

	if (n > 256 || veil_hex_encode(p, n, buf, sizeof(buf)) < 0)
		return json_null();
	return json_string(buf);
}

static const char *arch_lower(enum veil_nvgpu_arch a)
{
	return a == VEIL_NVGPU_ARCH_HOPPER ? "hopper"
	       : a == VEIL_NVGPU_ARCH_BLACKWELL ? "blackwell" : "unknown";
}

static const char *status_of(const struct veil_nvgpu_result *r, int rc)
{
	if (rc == 0)
		return "verified";
	if (!r->parsed)
		return "malformed";
	if (!r->chain_ok)
		return "chain_invalid";
	if (!r->fwid_ok)
		return "fwid_mismatch";
	if (!r->signature_ok)
		return "signature_invalid";
	if (r->nonce_checked && !r->nonce_ok)
		return "nonce_mismatch";
	if (r->rim_sig_checked && !r->rim_sig_ok)
		return "rim_signature_invalid";
	if (r->rim_checked && !r->rim_ok)
		return "rim_mismatch";
	return "rejected";
}

static const char *meas_name(uint8_t m)
{
	switch (m) {
	case VEIL_NVGPU_MEAS_MATCH: return "match";
	case VEIL_NVGPU_MEAS_MISMATCH: return "mismatch";
	case VEIL_NVGPU_MEAS_MISSING: return "missing";
	default: return "not_checked";
	}
}

static json_t *utc_json(int64_t t)
{
	char buf[VEIL_X509_ISO8601_LEN];

	if (veil_x509_iso8601_format(t, buf) < 0)
		return json_integer((json_int_t)t);
	return json_string(buf);
}

/* One entry per RIM given whose signature was checked: the time used, the
 * method, the signer chain from KeyInfo and, on failure, why. */
static json_t *rim_sigs_json(const struct veil_nvgpu_result *r)
{
	static const char *const role[2] = {"driver", "vbios"};
	json_t *a = json_array();
	bool bad = !a;

	for (int k = 0; !bad && k < 2; k++) {
		const struct veil_nvgpu_rim_sig *s = &r->rim_sig[k];
		json_t *e, *chain;

		if (!s->checked)
			continue;
		chain = json_array();
		bad |= !chain;
		for (size_t i = 0; chain && i < s->n_certs && i < VEIL_NVGPU_RIM_CHAIN_MAX; i++) {
			const struct veil_nvgpu_rim_cert *c = &s->certs[i];

			bad |= json_array_append_new(chain, json_pack(
				"{s:s,s:o,s:o,s:b}", "subject", c->subject, "not_before",
				utc_json(c->not_before), "not_after", utc_json(c->not_after),
				"valid_at_time", c->valid_at_time)) < 0;
		}
		e = json_pack("{s:s,s:b,s:o,s:s,s:o,s:o*}", "rim", role[k], "ok", s->ok, "time",
			      utc_json(s->time), "method", s->method, "error",
			      s->ok ? json_null() : json_string(s->error), "chain", chain);
		bad |= !e || json_array_append_new(a, e) < 0;
	}
	if (bad) {
		json_decref(a);
		return NULL;
	}
	return a;
}

json_t *veil_nvgpu_verdict_json(const struct veil_nvgpu_result *r, int rc)
{
	json_t *j = json_object(), *ms = json_array(), *checks = json_object();
	const struct veil_nvgpu_evidence *ev = &r->ev;
	bool bad = !j || !ms || !checks;

	if (bad)
		goto fail;
	bad |= json_object_set_new(j, "ok", json_boolean(rc == 0)) < 0;
	bad |= json_object_set_new(j, "kind", json_string("nvgpu")) < 0;
	bad |= json_object_set_new(j, "status", json_string(status_of(r, rc))) < 0;
	bad |= json_object_set_new(j, "advisories", json_array()) < 0;
	bad |= json_object_set_new(j, "error", rc == 0 ? json_null()
					     : json_string(r->error[0] ? r->error
							   : veil_strerror(rc))) < 0;
	bad |= json_object_set_new(j, "arch", json_string(arch_lower(r->arch))) < 0;
	if (r->parsed) {
		bad |= json_object_set_new(j, "nonce", hex_json(ev->nonce, sizeof(ev->nonce))) < 0;
		bad |= json_object_set_new(j, "driver_version", json_string(ev->driver_version)) < 0;
		bad |= json_object_set_new(j, "vbios_version", json_string(ev->vbios_version)) < 0;
		bad |= json_object_set_new(j, "fwid", hex_json(ev->fwid, ev->fwid_len)) < 0;
		bad |= json_object_set_new(j, "measurements_count",
					   json_integer((json_int_t)ev->n_blocks)) < 0;
		for (size_t i = 0; i < ev->n_blocks; i++) {
			const struct veil_nvgpu_block *b = &ev->blocks[i];
			json_t *m = json_pack("{s:i,s:o,s:s}", "index", b->index, "value",
					      hex_json(b->value, b->value_len), "rim",
					      meas_name(r->meas[b->index]));

			bad |= !m || json_array_append_new(ms, m) < 0;
		}
	}
	bad |= json_object_set_new(j, "measurements", ms) < 0;
	ms = NULL;
	if (r->ueid[0])
		bad |= json_object_set_new(j, "ueid", json_string(r->ueid)) < 0;
	bad |= json_object_set_new(checks, "signature", json_boolean(r->signature_ok)) < 0;
	bad |= json_object_set_new(checks, "chain", json_boolean(r->chain_ok)) < 0;
	bad |= json_object_set_new(checks, "fwid", json_boolean(r->fwid_ok)) < 0;
	bad |= json_object_set_new(checks, "nonce", r->nonce_checked ? json_boolean(r->nonce_ok)
								      : json_null()) < 0;
	bad |= json_object_set_new(checks, "rim", r->rim_checked ? json_boolean(r->rim_ok)
								  : json_null()) < 0;
	/* null: golden values scanned without a signature check
	 * (veil_nvgpu_rim_parse); see rim_sigs_json for each RIM */
	if (r->rim_checked) {
		json_t *sigs = rim_sigs_json(r);

		bad |= json_object_set_new(checks, "rim_signature", r->rim_sig_checked
						   ? json_boolean(r->rim_sig_ok) : json_null()) < 0;
		bad |= !sigs || json_object_set_new(j, "rim_signatures", sigs) < 0;
	}
	bad |= json_object_set_new(j, "checks", checks) < 0;
	checks = NULL;
	if (!bad)
		return j;
fail:
	json_decref(ms);
	json_decref(checks);
	json_decref(j);
	return NULL;
}

/* trustee's names for the opaque field ids (OpaqueDataType Display). */
static const char *opaque_name(uint16_t t)
{
	switch (t) {
	case 1: return "cert_issuer_name";
	case 2: return "cert_authority_key_identifier";
	case 3: return "driver_version";
	case 4: return "gpu_info";
	case 5: return "sku";
	case 6: return "vbios_version";
	case 7: return "manufacturer_id";
	case 8: return "tamper_detection";
	case 9: return "smc";
	case 10: return "vpr";
	case 11: return "nvdec0_status";
	case 12: return "measurement_count";
	case 13: return "cpr_info";
	case 14: return "board_id";
	case 15: return "chip_sku";
	case 16: return "chip_sku_mod";
	case 17: return "project";
	case 18: return "project_sku";
	case 19: return "project_sku_mod";
	case 20: return "fwid";
	case 21: return "protected_pcie_status";
	case 22: return "switch_pdi";
	case 23: return "floorswept_ports";
	case 24: return "position_id";
	case 25: return "lock_switch_status";
	case 32: return "gpu_link_conn";
	case 33: return "sys_enable_status";
	case 34: return "opaque_data_version";
	case 35: return "chip_info";
	case 36: return "feature_flag";
	default: return NULL;
	}
}

static json_t *trimmed_string(const uint8_t *v, size_t n)
{
	while (n > 0 && v[n - 1] == 0)
		n--;
	return json_stringn((const char *)v, n);
}

static uint64_t le_u64(const uint8_t *v, size_t n)
{
	uint64_t x = 0;

	for (size_t i = n < 8 ? n : 8; i > 0; i--)
		x = (x << 8) | v[i - 1];
	return x;
}

static json_t *opaque_value(const struct veil_nvgpu_evidence *ev, const uint8_t *v,
			    const struct veil_nvgpu_tlv *t)
{
	switch (t->type) {
	case VEIL_NVGPU_OP_DRIVER_VERSION:
		return json_string(ev->driver_version);
	case VEIL_NVGPU_OP_VBIOS_VERSION:
		return json_string(ev->vbios_version);
	case VEIL_NVGPU_OP_CHIP_SKU:
	case VEIL_NVGPU_OP_CHIP_SKU_MOD:
	case VEIL_NVGPU_OP_PROJECT:
	case VEIL_NVGPU_OP_PROJECT_SKU:
	case VEIL_NVGPU_OP_CHIP_INFO:
		return trimmed_string(v, t->len);
	case VEIL_NVGPU_OP_NVDEC0_STATUS:
		return json_string(ev->nvdec0_status ? "enabled" : "disabled");
	case VEIL_NVGPU_OP_MSRSCNT: {
		json_t *o = json_object();

		for (size_t i = 0; o && i < ev->n_msr_count; i++) {
			char k[24];

			snprintf(k, sizeof(k), "%zu", i + 1);
			if (json_object_set_new(o, k, json_integer(ev->msr_count[i])) < 0) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	case VEIL_NVGPU_OP_SWITCH_PDI: {
		json_t *a = json_array();

		for (size_t i = 0; a && i + 8 <= t->len; i += 8)
			if (json_array_append_new(a, hex_json(v + i, 8)) < 0) {
				json_decref(a);
				return NULL;
			}
		return a;
	}
	case VEIL_NVGPU_OP_OPAQUE_DATA_VERSION:
		return json_integer((json_int_t)le_u64(v, t->len));
	case VEIL_NVGPU_OP_FEATURE_FLAG: {
		uint64_t f = le_u64(v, t->len);

		return json_string(f == 0 ? "SPT" : f == 1 ? "MPT" : f == 2 ? "PPCIE" : "unknown");
	}
	default:
		return hex_json(v, t->len);
	}
}

json_t *veil_nvgpu_claims_json(const struct veil_nvgpu_result *r)
{
	const struct veil_nvgpu_evidence *ev = &r->ev;
	json_t *j = json_object(), *cfg = json_object(), *ms = json_object();
	bool bad = !j || !cfg || !ms;

	if (bad)
		goto fail;
	bad |= json_object_set_new(j, "arch", json_string(r->arch == VEIL_NVGPU_ARCH_HOPPER
							  ? "Hopper"
							  : r->arch == VEIL_NVGPU_ARCH_BLACKWELL
							  ? "Blackwell" : "Unknown")) < 0;
	bad |= json_object_set_new(j, "ueid", json_string(r->ueid)) < 0;
	for (size_t i = 0; i < ev->n_tlvs; i++) {
		const struct veil_nvgpu_tlv *t = &ev->tlvs[i];
		const char *name = opaque_name(t->type);
		char other[24];
		const uint8_t *v = ev->opaque + t->off;

		if (!name) {
			snprintf(other, sizeof(other), "opaque_%u", t->type);
			name = other;
		}
		bad |= json_object_set_new(cfg, name, opaque_value(ev, v, t)) < 0;
	}
	for (size_t i = 0; i < ev->n_blocks; i++) {
		char k[24];

		snprintf(k, sizeof(k), "%u", ev->blocks[i].index);
		bad |= json_object_set_new(ms, k, hex_json(ev->blocks[i].value,
							    ev->blocks[i].value_len)) < 0;
	}
	bad |= json_object_set_new(j, "config", cfg) < 0;
	cfg = NULL;
	bad |= json_object_set_new(j, "measurements", ms) < 0;
	ms = NULL;
	if (!bad)
		return j;
fail:
	json_decref(cfg);
	json_decref(ms);
	json_decref(j);
	return NULL;
}
