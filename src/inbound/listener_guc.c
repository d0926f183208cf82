/*-------------------------------------------------------------------------
 * listener_guc.c
 *	  The settings of the webhook listener (halo_itsm.listen_*), defined
 *	  from hi_guc_init() in guc.c. What fixes the listening sockets or the
 *	  library's per-connection limits is PGC_POSTMASTER (read once, when
 *	  the listener starts); what each request reads is PGC_SIGHUP.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "hi_listener.h"

char	   *hi_listen_addresses = NULL;
int			hi_listen_port = 8443;
char	   *hi_listen_tls_cert_file = NULL;
char	   *hi_listen_tls_key_file = NULL;
bool		hi_listen_allow_http = false;
char	   *hi_listen_role = NULL;
int			hi_listen_max_connections = 64;
int			hi_listen_max_headers = 50;
int			hi_listen_max_header_bytes = 16 * 1024;
int			hi_listen_idle_timeout_s = 15;
int			hi_listen_request_timeout_ms = 30000;
int			hi_listen_rate_limit = 600;
int			hi_listen_max_buffered = 16 * 1024 * 1024;

/* Defines the halo_itsm.listen_* settings (the PGC_POSTMASTER ones only while preloading). */
void
hi_listener_guc_init(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("halo_itsm.listen_addresses",
								   "Addresses the webhook listener listens on, comma-separated ('*': all; empty: no listener).",
								   "Plain HTTP only on loopback addresses unless halo_itsm.listen_allow_http is on; elsewhere set the TLS certificate and key.",
								   &hi_listen_addresses, "", PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
		DefineCustomIntVariable("halo_itsm.listen_port",
								"TCP port of the webhook listener.",
								NULL, &hi_listen_port, 8443, 1, 65535, PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		DefineCustomStringVariable("halo_itsm.listen_tls_cert_file",
								   "PEM certificate (chain) of the webhook listener; with the key file, the listener speaks HTTPS.",
								   NULL, &hi_listen_tls_cert_file, "", PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
		DefineCustomStringVariable("halo_itsm.listen_tls_key_file",
								   "PEM private key of the webhook listener's certificate.",
								   NULL, &hi_listen_tls_key_file, "", PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
		DefineCustomBoolVariable("halo_itsm.listen_allow_http",
								 "Allows plain HTTP on addresses other than loopback (behind a TLS-terminating proxy on another host).",
								 NULL, &hi_listen_allow_http, false, PGC_POSTMASTER, 0,
								 NULL, NULL, NULL);
		DefineCustomIntVariable("halo_itsm.listen_max_connections",
								"Most connections the webhook listener holds at once; more are closed at once.",
								NULL, &hi_listen_max_connections, 64, 1, 10000, PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		DefineCustomIntVariable("halo_itsm.listen_max_header_bytes",
								"Most bytes of a request line and headers (one connection's memory for them); more is answered 431.",
								NULL, &hi_listen_max_header_bytes, 16 * 1024, 4096, 1024 * 1024, PGC_POSTMASTER, GUC_UNIT_BYTE,
								NULL, NULL, NULL);
		DefineCustomIntVariable("halo_itsm.listen_idle_timeout",
								"A connection of the webhook listener on which nothing arrives this long is closed.",
								NULL, &hi_listen_idle_timeout_s, 15, 1, 3600, PGC_POSTMASTER, GUC_UNIT_S,
								NULL, NULL, NULL);
	}
	DefineCustomStringVariable("halo_itsm.listen_role",
							   "Role the webhook listener applies deliveries as (NOLOGIN; EXECUTE on ingest_webhook() and nothing else).",
							   "The extension creates halo_itsm_listener with just that grant; a superuser is refused.",
							   &hi_listen_role, "halo_itsm_listener", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.listen_max_headers",
							"Most request headers the webhook listener accepts; more are answered 431.",
							NULL, &hi_listen_max_headers, 50, 8, 1000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.listen_request_timeout",
							"Longest time one request (headers and body) may take to arrive; slower clients are dropped.",
							NULL, &hi_listen_request_timeout_ms, 30000, 100, 3600000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.listen_rate_limit",
							"Most requests per minute from one client address (0: no limit); more are answered 429.",
							NULL, &hi_listen_rate_limit, 600, 0, 1000000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("halo_itsm.listen_max_buffered",
							"Most body bytes the webhook listener holds over all connections; a request beyond is answered 503.",
							NULL, &hi_listen_max_buffered, 16 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024, PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}
