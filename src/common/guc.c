/*-------------------------------------------------------------------------
 * guc.c
 *	  The settings of halo_itsm: every GUC is prefixed "halo_itsm." and is
 *	  defined here, in one place, with its unit, bounds and description
 *	  (one function per group of settings; the listener's are in
 *	  src/inbound/listener_guc.c). Also which database the worker serves.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "halo_itsm.h"
#include "hi_listener.h"

char	   *hi_database_name = NULL;
char	   *hi_database_old = NULL;
char	   *hi_worker_role = NULL;
int			hi_budget_slots = 64;
int			hi_worker_restart_delay_ms = 5000;
int			hi_worker_restart_delay_max_ms = 300000;
bool		hi_allow_http = false;
bool		hi_allow_private_addresses = false;
char	   *hi_ca_file = NULL;
int			hi_max_concurrent_requests = 64;
int			hi_max_requests_per_instance = 1;
int			hi_connect_timeout_ms = 5000;
int			hi_request_timeout_ms = 30000;
int			hi_backoff_base_ms = 1000;
int			hi_backoff_max_ms = 300000;
int			hi_max_attempts = 12;
int			hi_request_budget = 250;
int			hi_request_budget_window_s = 300;
int			hi_poll_interval_ms = 1000;
char	   *hi_webhook_base_url = NULL;
int			hi_webhook_max_body = 1024 * 1024;
int			hi_webhook_tolerance_s = 300;

static void DefineWorkerSettings(void);
static void DefineHttpSettings(void);
static void DefineRetrySettings(void);
static void DefineWebhookSettings(void);

/* Defines all halo_itsm.* settings and reserves the prefix. */
void
hi_guc_init(void)
{
	DefineWorkerSettings();
	DefineHttpSettings();
	DefineRetrySettings();
	DefineWebhookSettings();
	/* the webhook listener's own (src/inbound/listener_guc.c) */
	hi_listener_guc_init();

	MarkGUCPrefixReserved("halo_itsm");
}

/* The delivery worker: its database and role, its restarts, the budget's slots. */
static void
DefineWorkerSettings(void)
{
	/*
	 * The database and the role are read by the launcher at every reload
	 * (SIGHUP); a changed value restarts the delivery worker there.
	 */
	DefineCustomStringVariable("halo_itsm.database_name",
							   "Database in which the halo_itsm background worker delivers tickets (empty: halo_itsm.database, else postgres).",
							   "Named like cron.database_name and pg_net.database_name. The extension must be installed in this database; "
							   "other databases can use CALL halo_itsm.deliver(). Wins over its old name halo_itsm.database.",
							   &hi_database_name, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("halo_itsm.database",
							   "Old name of halo_itsm.database_name, still read when that is empty.",
							   NULL, &hi_database_old, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("halo_itsm.worker_role",
							   "Role the halo_itsm background worker connects as (empty: the bootstrap superuser).",
							   "A role with LOGIN and the rights listed in docs/operations.md (Privileges); read at reload, a change restarts the worker.",
							   &hi_worker_role, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.worker_restart_delay",
							"First pause before the launcher starts a delivery worker that exited; it doubles at each quick exit.",
							"Back to this after the worker ran for a minute.",
							&hi_worker_restart_delay_ms, 5000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.worker_restart_delay_max",
							"Longest pause before the launcher starts a delivery worker that keeps exiting.",
							NULL, &hi_worker_restart_delay_max_ms, 300000, 100, 86400000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	/* a PGC_POSTMASTER setting can only be defined while preloading (later it is a FATAL error) */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("halo_itsm.budget_slots",
								"Integrations whose request budget is kept in shared memory at once (across all databases).",
								"An integration that has sent nothing within the budget window gives its slot up; when all are in use, "
								"an integration without one waits for one to free up.",
								&hi_budget_slots, 64, 1, 100000, PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	DefineCustomBoolVariable("halo_itsm.wait_for_replication",
							 "Sends nothing to Halo (and answers no webhook 200) before the commit is flushed on every streaming standby.",
							 "Under asynchronous replication a failover then loses no case whose ticket Halo has, and no applied webhook. "
							 "Costs nothing when no standby streams; see docs/high-availability.md.",
							 &hi_wait_for_replication, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
}

/* HTTP to Halo: what may be reached, TLS, concurrency and timeouts. */
static void
DefineHttpSettings(void)
{
	DefineCustomBoolVariable("halo_itsm.allow_http",
							 "Allows http:// Halo instance URLs (for tests against a local mock only).",
							 NULL, &hi_allow_http, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("halo_itsm.allow_private_addresses",
							 "Allows Halo instance hosts that resolve to private, loopback or link-local addresses.",
							 NULL, &hi_allow_private_addresses, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("halo_itsm.ca_file",
							   "File of CA certificates used to verify Halo's TLS certificate (empty: the system's).",
							   NULL, &hi_ca_file, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.max_concurrent_requests",
							"Maximum HTTP requests the worker has in flight across all integrations.",
							NULL, &hi_max_concurrent_requests, 64, 1, 1024, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.max_requests_per_instance",
							"Maximum ticket deliveries in flight per integration (Halo numbers tickets with a race: keep 1).",
							NULL, &hi_max_requests_per_instance, 1, 1, 64, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.connect_timeout",
							"Timeout for connecting to Halo.",
							NULL, &hi_connect_timeout_ms, 5000, 100, 600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.request_timeout",
							"Timeout for one whole HTTP request to Halo.",
							NULL, &hi_request_timeout_ms, 30000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* Retries and pacing: backoff, attempts, the request budget, the poll interval. */
static void
DefineRetrySettings(void)
{
	DefineCustomIntVariable("halo_itsm.backoff_base",
							"First retry delay; each further attempt doubles it, with jitter.",
							NULL, &hi_backoff_base_ms, 1000, 1, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.backoff_max",
							"Longest retry delay.",
							NULL, &hi_backoff_max_ms, 300000, 1, 86400000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.max_attempts",
							"Attempts after which an outbox item is dead (halo_itsm.retry() revives it).",
							NULL, &hi_max_attempts, 12, 1, 1000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.request_budget",
							"Maximum requests per integration within halo_itsm.request_budget_window (0: no budget).",
							"Hosted Halo allows about 300 requests per 5 minutes per API application.",
							&hi_request_budget, 250, 0, 1000000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.request_budget_window",
							"Length of the rolling window of the request budget.",
							NULL, &hi_request_budget_window_s, 300, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.poll_interval",
							"How often the worker looks for due retries when nothing wakes it.",
							NULL, &hi_poll_interval_ms, 1000, 10, 600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* Webhooks from Halo: the public URL, the body limit, the clock tolerance. */
static void
DefineWebhookSettings(void)
{
	DefineCustomStringVariable("halo_itsm.webhook_base_url",
							   "Public URL prefix of the webhook receiver; the webhook key is appended.",
							   NULL, &hi_webhook_base_url, "", PGC_SUSET, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.webhook_max_body",
							"Largest webhook body accepted.",
							NULL, &hi_webhook_max_body, 1024 * 1024, 1024, 64 * 1024 * 1024, PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.webhook_tolerance",
							"How far a webhook's x-halo-date may be from the database clock, either way.",
							NULL, &hi_webhook_tolerance_s, 300, 1, 86400, PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * The database the delivery worker serves: halo_itsm.database_name, else
 * its old name halo_itsm.database, else postgres (as cron.database_name).
 * *setting (when not NULL) gets the name of the setting that decided.
 */
const char *
hi_worker_database(const char **setting)
{
	const char *name = "halo_itsm.database_name";
	const char *value = "postgres";

	if (hi_database_name != NULL && hi_database_name[0] != '\0')
		value = hi_database_name;
	else if (hi_database_old != NULL && hi_database_old[0] != '\0')
	{
		value = hi_database_old;
		name = "halo_itsm.database";
	}
	if (setting)
		*setting = name;
	return value;
}

/*
 * When both halo_itsm.database_name and its old name are set, to different
 * values, a message saying which one is used (the new name); else NULL.
 */
char *
hi_database_conflict(void)
{
	if (hi_database_name == NULL || hi_database_name[0] == '\0' ||
		hi_database_old == NULL || hi_database_old[0] == '\0' ||
		strcmp(hi_database_name, hi_database_old) == 0)
		return NULL;
	return psprintf("halo_itsm.database_name = '%s' and its old name halo_itsm.database = '%s' are both set: '%s' is used",
					hi_database_name, hi_database_old, hi_database_name);
}
