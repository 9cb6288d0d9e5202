/* Fuzzes the strict PEM chain parser (include/veil/x509.h): any input is
 * refused or yields 1..VEIL_X509_CHAIN_MAX certificates; the canonical
 * variant accepts a subset of what the plain one accepts. */
#include <stdlib.h>

#include "veil/base.h"
#include "veil/x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	STACK_OF(X509) *sk = NULL;
	bool plain_ok;

	if (size > 1u << 16)
		return 0;
	plain_ok = veil_x509_pem_chain_parse(data, size, &sk) == 0;
	if (plain_ok) {
		if (!sk || sk_X509_num(sk) < 1 || sk_X509_num(sk) > VEIL_X509_CHAIN_MAX)
			abort();
		sk_X509_pop_free(sk, X509_free);
		sk = NULL;
	}
	if (veil_x509_pem_chain_parse_canonical(data, size, &sk) == 0) {
		if (!plain_ok)
			abort();
		sk_X509_pop_free(sk, X509_free);
	}
	return 0;
}
