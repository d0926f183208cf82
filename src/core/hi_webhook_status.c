/*-------------------------------------------------------------------------
 * hi_webhook_status.c
 *	  The one SQLSTATE-to-HTTP map of webhook deliveries, read by the
 *	  listener (src/inbound/listener_apply.c) and, through the SQL function
 *	  halo_itsm.webhook_http_status(), by external receivers
 *	  (test/receiver/receiver.py). The table "What ingest_webhook()
 *	  checks" of docs/webhooks.md documents it.
 *
 *	  WH001 unknown key                              404
 *	  WH002 body too large                           413
 *	  WH003, WH004, WH008, WH009, WH010, WH011       400
 *	  WH005, WH006, WH007 (date, signature)          401
 *	  none (accepted)                                200
 *	  25006 read-only transaction (hot standby),     503 (Halo retries)
 *	  57P01..57P03 (shutdown, cannot connect now)
 *	  anything else                                  500 (Halo retries)
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "hi_webhook_status.h"

/* One SQLSTATE and its answer. */
typedef struct HiStatusRow
{
	const char *sqlstate;
	int			http;
} HiStatusRow;

static const HiStatusRow hi_status_map[] = {
	{"WH001", 404},
	{"WH002", 413},
	{"WH003", 400},
	{"WH004", 400},
	{"WH005", 401},
	{"WH006", 401},
	{"WH007", 401},
	{"WH008", 400},
	{"WH009", 400},
	{"WH010", 400},
	{"WH011", 400},
	{"25006", 503},
	{"57P01", 503},
	{"57P02", 503},
	{"57P03", 503},
};

/* The HTTP status for a SQLSTATE (NULL or "": accepted, 200; unknown: 500). */
int
hi_webhook_http_status(const char *sqlstate)
{
	size_t		i;

	if (sqlstate == NULL || sqlstate[0] == '\0')
		return 200;
	for (i = 0; i < sizeof(hi_status_map) / sizeof(hi_status_map[0]); i++)
		if (strcmp(sqlstate, hi_status_map[i].sqlstate) == 0)
			return hi_status_map[i].http;
	return 500;
}
