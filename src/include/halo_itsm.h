/*-------------------------------------------------------------------------
 * halo_itsm.h
 *	  Declarations shared by the PostgreSQL-side files of halo_itsm: the
 *	  settings (GUCs), shared memory and the serving state, the request
 *	  budget's shared part, the standby refusal, the installed extension's
 *	  version (extension.c), the kept rejected webhooks,
 *	  the settings pinned for SQL run from C, the registration of background
 *	  workers, the launcher and the delivery worker. The delivery engine,
 *	  store, HTTP, tokens, SPI and JSON helpers have headers of their own.
 *-------------------------------------------------------------------------
 */
#ifndef HALO_ITSM_H
#define HALO_ITSM_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "postmaster/bgworker.h"

/* settings (guc.c) */
extern char *hi_database_name;
extern char *hi_database_old;
extern char *hi_worker_role;
extern int	hi_budget_slots;
extern int	hi_worker_restart_delay_ms;
extern int	hi_worker_restart_delay_max_ms;
extern bool hi_allow_http;
extern bool hi_allow_private_addresses;
extern char *hi_ca_file;
extern int	hi_max_concurrent_requests;
extern int	hi_max_requests_per_instance;
extern int	hi_connect_timeout_ms;
extern int	hi_request_timeout_ms;
extern int	hi_backoff_base_ms;
extern int	hi_backoff_max_ms;
extern int	hi_max_attempts;
extern int	hi_request_budget;
extern int	hi_request_budget_window_s;
extern int	hi_poll_interval_ms;
extern char *hi_webhook_base_url;
extern int	hi_webhook_max_body;
extern int	hi_webhook_tolerance_s;
extern bool hi_wait_for_replication;

extern void hi_guc_init(void);
extern const char *hi_worker_database(const char **setting);
extern char *hi_database_conflict(void);

/* What pg_extension says of halo_itsm here (extension.c). */
typedef enum HiExtensionState
{
	HI_EXT_MISSING = 0,			/* not installed in this database */
	HI_EXT_READY = 1,			/* installed at this library's version */
	HI_EXT_OTHER_VERSION = 2	/* installed at another version: UPDATE pending */
} HiExtensionState;

extern HiExtensionState hi_extension_lookup(Oid *owner, char **version);
extern void hi_extension_require_current(const char *what);

/* Whether and how a delivery worker serves halo_itsm.database (shared memory). */
typedef enum HiServeState
{
	HI_SERVE_UNKNOWN = 0,		/* the launcher has not looked yet */
	HI_SERVE_NO_DATABASE,		/* halo_itsm.database does not exist */
	HI_SERVE_NO_CONNECTIONS,	/* it exists but does not allow connections */
	HI_SERVE_NO_ROLE,			/* halo_itsm.worker_role is missing or cannot log in */
	HI_SERVE_STARTING,			/* the delivery worker is (re)starting */
	HI_SERVE_NO_EXTENSION,		/* the worker runs; the extension is not installed */
	HI_SERVE_OTHER_VERSION,		/* the worker runs; the SQL awaits ALTER EXTENSION UPDATE */
	HI_SERVE_RUNNING			/* the worker runs and delivers */
} HiServeState;

/* What the launcher and the worker publish in shared memory, copied out. */
typedef struct HiWorkerInfo
{
	pid_t		worker_pid;		/* 0: no delivery worker runs */
	Oid			worker_db;
	TimestampTz worker_started_at;
	HiServeState serve_state;
	pid_t		launcher_pid;	/* 0: no launcher runs */
	int			quick_exits;	/* worker exits in a row soon after starting */
	TimestampTz next_start_at;	/* when the launcher starts it again (0: not waiting) */
	char		database[NAMEDATALEN];	/* the launcher's database setting in force */
	char		database_setting[32];	/* which name decided it */
	char		role[NAMEDATALEN];	/* the launcher's worker_role in force */
} HiWorkerInfo;

/* shared memory and wake-up at commit (shmem.c) */
extern void hi_shmem_request(void);
extern void hi_shmem_init(void);
extern void hi_shmem_set_worker(bool running);
extern void hi_shmem_set_saturated(bool saturated);
extern bool hi_shmem_worker_running(void);
extern pid_t hi_shmem_worker_pid(void);
extern void hi_shmem_set_serve_state(HiServeState state);
extern void hi_shmem_set_launcher(bool running);
extern void hi_shmem_set_backoff(int quick_exits, TimestampTz next_start_at);
extern void hi_shmem_set_settings(void);
extern bool hi_shmem_worker_info(HiWorkerInfo *info);
extern uint32 hi_shmem_request_restart(void);
extern uint32 hi_shmem_restart_pending(void);
extern void hi_shmem_restart_done(uint32 ticket, bool started);
extern bool hi_shmem_restart_finished(uint32 ticket, bool *started);

/* the request budget shared by every process, per integration (budget.c) */
extern void hi_budget_shmem_request(void);
extern void hi_budget_shmem_startup(void);
extern long hi_budget_take(int integration_id, TimestampTz now, bool take);
extern int	hi_budget_used(int integration_id, TimestampTz now);

/* refusing writes on a hot standby (standby.c) */
extern void hi_refuse_on_standby(const char *entry_point);

/* replwait.c */
extern int	hi_replwait(XLogRecPtr lsn);
extern int	hi_shmem_swap_extension_state(int state);
extern void hi_wake_worker_at_commit(bool forced);

/* the kept rejected webhook deliveries (rejected.c) */
typedef struct HiRejected
{
	int64		id;
	int			integration_id;
	TimestampTz received_at;
	char		sqlstate[6];
	char	   *reason;
	char	   *headers;		/* JSON text; NULL when not kept */
	char	   *body;			/* NULL when not kept */
	int			body_len;		/* -1 when not kept */
} HiRejected;

extern void hi_rejected_shmem_request(void);
extern void hi_rejected_shmem_startup(void);
extern void hi_rejected_record(int integration_id, int sqlerrcode, const char *reason,
							   const char *headers, const char *body, int64 body_len);
extern bool hi_rejected_fetch(int64 id, HiRejected *r);

/* the signature scheme and the webhook host (webhook.c), for the diagnosis */
extern char *hi_webhook_base_host(void);
extern bool hi_webhook_parse_date(const char *value, TimestampTz *result);
extern bool hi_read_timestamp(const char *str, bool use_zone, TimestampTz *result);

/* the case trigger and the restore check (enqueue.c) */
extern bool hi_restoring(void);

/* settings that give SQL text its meaning, pinned (pinning.c) */
extern void hi_pin_worker_session(void);
extern int	hi_pin_begin(void);
extern void hi_pin_end(int level);

/* every background worker of halo_itsm is registered by this (bgworker.c) */
extern bool hi_register_worker(const char *function, const char *name,
							   BgWorkerStartTime start_time, int restart_time,
							   Datum main_arg, Oid roleoid, BackgroundWorkerHandle **handle);

/* the launcher (launcher.c) and the delivery worker it starts (worker.c) */
extern void hi_launcher_register(void);
extern PGDLLEXPORT void halo_itsm_launcher_main(Datum arg);
extern PGDLLEXPORT void halo_itsm_worker_main(Datum arg);

#endif							/* HALO_ITSM_H */
