/*-------------------------------------------------------------------------
 * sig_bench.c
 *	  Figure 5b of the benchmarks: the webhook signature check of
 *	  src/core/hi_signature.c (the plain C function the extension calls)
 *	  against raw OpenSSL HMAC-SHA256 over the same bytes.
 *
 *	  Usage: sig_bench [iterations] [repetitions]
 *	  Prints one line per repetition:
 *	    verify_per_s  canonical_verify_per_s  raw_hmac_per_s
 *	  verify: hi_signature_verify() over the canonical string (decode the
 *	  x-signature, HMAC, constant-time compare); canonical_verify: building
 *	  the canonical string from the headers and body first, as ingest does;
 *	  raw: HMAC() over the canonical string, nothing else.
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hi_signature.h"

static const char *secret = "hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2";

/* Seconds of CLOCK_MONOTONIC. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the three measurements and prints their rates. */
int
main(int argc, char **argv)
{
	long		iters = argc > 1 ? atol(argv[1]) : 200000;
	int			reps = argc > 2 ? atoi(argv[2]) : 3;
	char		body[1024];
	char		clen[32];
	char		sig[HI_SIG_B64_LEN + 1];
	const char *ctype = "application/json";
	const char *host = "soc.example.com";
	const char *date = "Sat, 28 Nov 2026 15:56:01 GMT";
	unsigned char *canon;
	size_t		canon_len,
				body_len;
	volatile unsigned long sink = 0;
	int			r;

	/* a note delivery as Halo sends it, about 500 bytes */
	body_len = (size_t) snprintf(body, sizeof(body),
								 "{\"id\":\"5b0c2f4e-8d1a-4c1e-9a57-2f1f0d3e6b11\",\"webhook_id\":\"d9d6\","
								 "\"event\":\"Ticket Updated by Agent\",\"message\":\"Note added\","
								 "\"object_id\":4242,\"agent_id\":3,\"timestamp\":\"2026-11-28T15:56:01Z\","
								 "\"ticket\":{\"id\":4242,\"status_id\":2,\"hasbeenclosed\":false,"
								 "\"summary\":\"C-1: Suspicious login\",\"third_party_id_string\":\"C-1\"},"
								 "\"action\":{\"id\":9001,\"ticket_id\":4242,\"who\":\"Jane Agent\","
								 "\"note\":\"Contained the host; resetting the credentials now.\","
								 "\"hiddenfromuser\":false,\"datetime\":\"2026-11-28T15:55:58Z\"}}");
	snprintf(clen, sizeof(clen), "%zu", body_len);
	canon = hi_canonical_string(clen, ctype, host, date, (unsigned char *) body, body_len, &canon_len);
	if (canon == NULL || hi_signature_compute(secret, strlen(secret), canon, canon_len, sig) != 0)
	{
		fprintf(stderr, "sig_bench: could not sign the sample delivery\n");
		return 1;
	}
	if (hi_signature_verify(secret, strlen(secret), canon, canon_len, sig, strlen(sig)) != HI_SIG_OK)
	{
		fprintf(stderr, "sig_bench: the sample signature does not verify\n");
		return 1;
	}

	for (r = 0; r < reps; r++)
	{
		double		t0,
					t1,
					t2,
					t3;
		long		i;

		t0 = now_s();
		for (i = 0; i < iters; i++)
			sink += hi_signature_verify(secret, strlen(secret), canon, canon_len, sig, HI_SIG_B64_LEN);
		t1 = now_s();
		for (i = 0; i < iters; i++)
		{
			size_t		n;
			unsigned char *c = hi_canonical_string(clen, ctype, host, date,
												   (unsigned char *) body, body_len, &n);

			sink += hi_signature_verify(secret, strlen(secret), c, n, sig, HI_SIG_B64_LEN);
			free(c);
		}
		t2 = now_s();
		for (i = 0; i < iters; i++)
		{
			unsigned char md[EVP_MAX_MD_SIZE];
			unsigned int mdlen = 0;

			HMAC(EVP_sha256(), secret, (int) strlen(secret), canon, canon_len, md, &mdlen);
			sink += md[0] + mdlen;
		}
		t3 = now_s();
		printf("%.0f %.0f %.0f\n", iters / (t1 - t0), iters / (t2 - t1), iters / (t3 - t2));
	}
	free(canon);
	return sink == 0xdeadbeef;
}
