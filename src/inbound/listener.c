/*-------------------------------------------------------------------------
 * listener.c
 *	  The webhook listener: an optional background worker (on when
 *	  halo_itsm.listen_addresses is set) that receives Halo's webhooks over
 *	  HTTP(S) with libmicrohttpd and applies them in the delivery worker's
 *	  database (halo_itsm.database_name, read by hi_worker_database()).
 *
 *	  libmicrohttpd runs without threads of its own (no
 *	  MHD_USE_INTERNAL_POLLING_THREAD): each daemon (one per listening
 *	  address) keeps its sockets in an epoll set (MHD_USE_EPOLL), whose file
 *	  descriptor this worker waits on in a WaitEventSet beside its latch, and
 *	  MHD_run() handles what is ready, calling the request callbacks
 *	  (listener_request.c) in this process, so every call into PostgreSQL
 *	  happens on the worker's one thread. SIGTERM ends the worker, SIGHUP
 *	  rereads the PGC_SIGHUP settings (as the delivery worker does).
 *
 *	  Slow clients: libmicrohttpd closes a connection that is idle for
 *	  halo_itsm.listen_idle_timeout, but a client that sends a byte a second
 *	  is never idle; so each connection is also tracked here in a table as
 *	  large as the connection limit, with the time its current request
 *	  began, and one that takes longer than halo_itsm.listen_request_timeout
 *	  is shut down (the library then closes it on its next read).
 *
 *	  The worker starts when the server is consistent, also on a hot standby,
 *	  where it answers 503 (listener_apply.c). It connects as the bootstrap
 *	  superuser, only to be able to run; every delivery runs as
 *	  halo_itsm.listen_role (listener_apply.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_compat.h"
#include "hi_listener.h"

/* most listening sockets (addresses, each a daemon) */
#define HI_MAX_DAEMONS 8
/* longest wait in the loop, so that overdue requests are found */
#define HI_LOOP_MAX_MS 200
/* largest certificate or key file read */
#define HI_MAX_PEM_BYTES (1024 * 1024)

/* One open connection: when its current request began. */
typedef struct HiConnSlot
{
	bool		used;
	bool		shut;			/* shut down for being too slow */
	int			fd;
	TimestampTz started;
} HiConnSlot;

static struct MHD_Daemon *daemons[HI_MAX_DAEMONS];
static int	ndaemons = 0;
static HiConnSlot *conns = NULL;
static int	nconns = 0;

static void MhdLogger(void *cls, const char *fmt, va_list ap);
static void MhdPanic(void *cls, const char *file, unsigned int line, const char *reason);
static void ConnNotify(void *cls, struct MHD_Connection *c, void **socket_context,
					   enum MHD_ConnectionNotificationCode code);
static void DropSlowClients(void);
static char *ReadPem(const char *path, const char *setting);
static bool IsLoopback(const struct sockaddr *sa);
static void RefuseToStart(const char *msg, const char *hint);
static void StartDaemon(const struct sockaddr *sa, const char *label, const char *cert,
						const char *key);
static void StartDaemons(void);
static void StopDaemons(int code, Datum arg);

/* Registers the listener with the postmaster when listen_addresses is set (from _PG_init). */
void
hi_listener_register(void)
{
	if (hi_listen_addresses == NULL || hi_listen_addresses[0] == '\0')
		return;
	/* also on a hot standby, where it answers 503 so that Halo retries */
	hi_register_worker("halo_itsm_listener_main", "halo_itsm webhook listener",
					   BgWorkerStart_ConsistentState, 10, (Datum) 0, InvalidOid, NULL);
}

/* MHD's messages go to the server log at DEBUG1 (a hostile client must not fill the log). */
static void
MhdLogger(void *cls, const char *fmt, va_list ap)
{
	char		buf[512];
	size_t		len;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	elog(DEBUG1, "halo_itsm: webhook listener: %s", buf);
}

/* MHD's fatal errors (an internal inconsistency): the worker exits and is restarted. */
static void
MhdPanic(void *cls, const char *file, unsigned int line, const char *reason)
{
	elog(FATAL, "halo_itsm: webhook listener: libmicrohttpd failed at %s:%u: %s",
		 file ? file : "?", line, reason ? reason : "?");
}

/* A connection opened or closed: keep its slot in the table of request start times. */
static void
ConnNotify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code)
{
	int			i;

	if (code == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

		*socket_context = NULL;
		for (i = 0; i < nconns; i++)
			if (!conns[i].used)
			{
				conns[i].used = true;
				conns[i].shut = false;
				conns[i].fd = info ? info->connect_fd : -1;
				conns[i].started = GetCurrentTimestamp();
				*socket_context = &conns[i];
				break;
			}
	}
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context != NULL)
	{
		((HiConnSlot *) *socket_context)->used = false;
		*socket_context = NULL;
	}
}

/* A request on this connection ended: the next one's time starts now. */
void
hi_listener_conn_touch(void *socket_context)
{
	if (socket_context != NULL)
		((HiConnSlot *) socket_context)->started = GetCurrentTimestamp();
}

/* Shuts down every connection whose request took longer than listen_request_timeout. */
static void
DropSlowClients(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < nconns; i++)
		if (conns[i].used && !conns[i].shut && conns[i].fd >= 0 &&
			TimestampDifferenceExceeds(conns[i].started, now, hi_listen_request_timeout_ms))
		{
			conns[i].shut = true;
			(void) shutdown(conns[i].fd, SHUT_RDWR);
		}
}

/* Reads a whole PEM file (bounded); exits the worker with a clear message when it cannot. */
static char *
ReadPem(const char *path, const char *setting)
{
	FILE	   *f = AllocateFile(path, "rb");
	char	   *buf;
	size_t		n;

	if (f == NULL)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("halo_itsm: the webhook listener cannot read %s \"%s\": %m", setting, path),
				 errhint("Make the file readable by the server's operating system user, or correct %s; it is read when the listener starts.",
						 setting)));
	buf = palloc(HI_MAX_PEM_BYTES + 1);
	n = fread(buf, 1, HI_MAX_PEM_BYTES + 1, f);
	FreeFile(f);
	if (n == 0 || n > HI_MAX_PEM_BYTES)
		ereport(FATAL,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: %s \"%s\" is empty or larger than %d bytes", setting, path, HI_MAX_PEM_BYTES),
				 errhint("Point %s at a PEM file.", setting)));
	buf[n] = '\0';
	return buf;
}

/* True for 127.0.0.0/8 and ::1 (and ::ffff:127.x.y.z). */
static bool
IsLoopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* Says that the listener cannot start as configured, and exits for good (until the next server start). */
static void
RefuseToStart(const char *msg, const char *hint)
{
	ereport(LOG,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("halo_itsm: the webhook listener does not start: %s", msg),
			 errhint("%s", hint)));
	/* exit code 0: the postmaster does not start it again (the settings need a restart) */
	proc_exit(0);
}

/* Starts one daemon on sa (NULL: every address, both IP versions) with the common options. */
static void
StartDaemon(const struct sockaddr *sa, const char *label, const char *cert, const char *key)
{
	struct MHD_OptionItem opts[16];
	int			n = 0;
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	struct MHD_Daemon *d;

	if (ndaemons >= HI_MAX_DAEMONS)
		RefuseToStart("halo_itsm.listen_addresses names too many addresses",
					  "Name at most 8 addresses, or '*' for all.");
	if (cert != NULL)
		flags |= MHD_USE_TLS;
	if (sa == NULL)
		flags |= MHD_USE_DUAL_STACK;
	else if (sa->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;

	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_LIMIT, hi_listen_max_connections, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_TIMEOUT, hi_listen_idle_timeout_s, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_MEMORY_LIMIT, hi_listen_max_header_bytes, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_CONNECTION_MEMORY_INCREMENT, 1024, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) hi_listener_completed, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) ConnNotify, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t) MhdLogger, NULL};
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_LISTEN_BACKLOG_SIZE, 128, NULL};
	/* refuse what HTTP/1.1 forbids (e.g. whitespace before a header's colon) */
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL};
	if (sa != NULL)
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_SOCK_ADDR, 0, (void *) sa};
	if (cert != NULL)
	{
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *) cert};
		opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *) key};
	}
	opts[n++] = (struct MHD_OptionItem) {MHD_OPTION_END, 0, NULL};

	d = MHD_start_daemon(flags, (uint16_t) hi_listen_port, NULL, NULL, hi_listener_access, NULL,
						 MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (d == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("halo_itsm: the webhook listener could not listen on %s port %d", label, hi_listen_port),
				 errhint("Another program may use the port, the address may not be this host's, or the TLS certificate and key may not match; "
						 "the server log's DEBUG1 lines say more. The listener tries again in 10 s.")));
	daemons[ndaemons++] = d;
}

/* Parses listen_addresses, checks the TLS rule, and starts a daemon per address. */
static void
StartDaemons(void)
{
	char	   *list = pstrdup(hi_listen_addresses);
	bool		tls = hi_listen_tls_cert_file[0] != '\0' || hi_listen_tls_key_file[0] != '\0';
	char	   *cert = NULL;
	char	   *key = NULL;
	char	   *tok;
	char	   *save = NULL;

	if (tls && (hi_listen_tls_cert_file[0] == '\0' || hi_listen_tls_key_file[0] == '\0'))
		RefuseToStart("only one of halo_itsm.listen_tls_cert_file and halo_itsm.listen_tls_key_file is set",
					  "Set both (HTTPS) or neither (plain HTTP, on loopback only), and restart the server.");
	if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		RefuseToStart("this libmicrohttpd was built without TLS",
					  "Install Debian's libmicrohttpd12 (built with GnuTLS).");
	if (tls)
	{
		cert = ReadPem(hi_listen_tls_cert_file, "halo_itsm.listen_tls_cert_file");
		key = ReadPem(hi_listen_tls_key_file, "halo_itsm.listen_tls_key_file");
	}

	for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
	{
		struct addrinfo hints;
		struct addrinfo *res = NULL;
		struct addrinfo *ai;
		char		port[8];
		int			rc;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		while (*tok != '\0' && (tok[strlen(tok) - 1] == ' ' || tok[strlen(tok) - 1] == '\t'))
			tok[strlen(tok) - 1] = '\0';
		if (*tok == '\0')
			continue;
		if (strcmp(tok, "*") == 0)
		{
			if (!tls && !hi_listen_allow_http)
				RefuseToStart("plain HTTP on every address ('*') needs halo_itsm.listen_allow_http",
							  "Set halo_itsm.listen_tls_cert_file and halo_itsm.listen_tls_key_file (HTTPS), listen on '127.0.0.1' behind a TLS proxy, "
							  "or set halo_itsm.listen_allow_http = on when a proxy on another host terminates TLS; then restart the server.");
			StartDaemon(NULL, "every address", cert, key);
			continue;
		}
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
		snprintf(port, sizeof(port), "%d", hi_listen_port);
		rc = getaddrinfo(tok, port, &hints, &res);
		if (rc != 0)
			RefuseToStart(psprintf("halo_itsm.listen_addresses names \"%s\", which does not resolve: %s", tok, gai_strerror(rc)),
						  "Name IP addresses or host names of this host, comma-separated, and restart the server.");
		for (ai = res; ai != NULL; ai = ai->ai_next)
		{
			if (!tls && !hi_listen_allow_http && !IsLoopback(ai->ai_addr))
				RefuseToStart(psprintf("plain HTTP on \"%s\", which is not a loopback address, needs halo_itsm.listen_allow_http", tok),
							  "Set halo_itsm.listen_tls_cert_file and halo_itsm.listen_tls_key_file (HTTPS), listen on '127.0.0.1' behind a TLS proxy, "
							  "or set halo_itsm.listen_allow_http = on when a proxy on another host terminates TLS; then restart the server.");
			StartDaemon(ai->ai_addr, tok, cert, key);
		}
		freeaddrinfo(res);
	}
	if (ndaemons == 0)
		RefuseToStart("halo_itsm.listen_addresses names no address", "Name at least one address, e.g. '127.0.0.1'.");
	ereport(LOG,
			(errmsg("halo_itsm: webhook listener serving %s://%s:%d/halo/<webhook key> in database \"%s\"",
					tls ? "https" : "http", hi_listen_addresses, hi_listen_port, hi_worker_database(NULL))));
	/* the one process of halo_itsm on a standby says, once, why nothing else runs */
	if (RecoveryInProgress())
		ereport(LOG,
				(errmsg("halo_itsm: this server is a hot standby: it delivers nothing and applies no webhook until it is promoted"),
				 errhint("The launcher and the delivery worker start at promotion, by themselves; until then the listener answers 503.")));
}

/* Stops the daemons (closes the listening sockets) when the worker exits. */
static void
StopDaemons(int code, Datum arg)
{
	int			i;

	for (i = 0; i < ndaemons; i++)
		MHD_stop_daemon(daemons[i]);
	ndaemons = 0;
}

/* Entry point of the webhook listener. */
void
halo_itsm_listener_main(Datum arg)
{
	WaitEventSet *set;
	MemoryContext loop_cxt;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(hi_worker_database(NULL), NULL, 0);
	/* over the database's and role's settings: their owners must not redirect this session */
	hi_pin_worker_session();
	pgstat_report_appname("halo_itsm listener");

	MHD_set_panic_func(MhdPanic, NULL);
	nconns = hi_listen_max_connections + 1;
	conns = MemoryContextAllocZero(TopMemoryContext, sizeof(HiConnSlot) * nconns);
	StartDaemons();
	on_proc_exit(StopDaemons, (Datum) 0);

	set = hi_create_wait_event_set(TopMemoryContext, 2 + ndaemons);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < ndaemons; i++)
	{
		const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemons[i], MHD_DAEMON_INFO_EPOLL_FD);

		if (info == NULL || info->epoll_fd < 0)
			elog(FATAL, "halo_itsm: webhook listener: libmicrohttpd gave no epoll descriptor");
		AddWaitEventToSet(set, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
	}

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "halo_itsm listener loop", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		WaitEvent	events[HI_MAX_DAEMONS + 2];
		long		timeout_ms = HI_LOOP_MAX_MS;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(loop_cxt);
		for (i = 0; i < ndaemons; i++)
		{
			MHD_UNSIGNED_LONG_LONG t;

			(void) MHD_run(daemons[i]);
			if (MHD_get_timeout(daemons[i], &t) == MHD_YES && (long) Min(t, (MHD_UNSIGNED_LONG_LONG) HI_LOOP_MAX_MS) < timeout_ms)
				timeout_ms = (long) t;
		}
		DropSlowClients();
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);

		(void) WaitEventSetWait(set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
