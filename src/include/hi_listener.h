/*-------------------------------------------------------------------------
 * hi_listener.h
 *	  The webhook listener (src/inbound/listener*.c): a background worker
 *	  that receives Halo's webhooks over HTTP(S) with libmicrohttpd, driven
 *	  from the worker's own event loop, and applies each delivery with
 *	  halo_itsm.ingest_webhook() in a transaction of its own.
 *-------------------------------------------------------------------------
 */
#ifndef HI_LISTENER_H
#define HI_LISTENER_H

#include "postgres.h"

/* settings (listener_guc.c) */
extern char *hi_listen_addresses;
extern int	hi_listen_port;
extern char *hi_listen_tls_cert_file;
extern char *hi_listen_tls_key_file;
extern bool hi_listen_allow_http;
extern char *hi_listen_role;
extern int	hi_listen_max_connections;
extern int	hi_listen_max_headers;
extern int	hi_listen_max_header_bytes;
extern int	hi_listen_idle_timeout_s;
extern int	hi_listen_request_timeout_ms;
extern int	hi_listen_rate_limit;
extern int	hi_listen_max_buffered;

extern void hi_listener_guc_init(void);

/* the worker (listener.c) */
extern void hi_listener_register(void);
extern PGDLLEXPORT void halo_itsm_listener_main(Datum arg);
extern void hi_listener_conn_touch(void *socket_context);

/* the database side (listener_apply.c): each runs its own transaction, never raises, and sets *answer (malloc'd JSON) */
extern int	hi_listener_apply(const char *key, int n, const char *const *names, const char *const *values,
							  const char *body, size_t len, char **answer);
extern int	hi_listener_health(char **answer);
extern void hi_listener_record_rejection(const char *key, int n, const char *const *names,
										 const char *const *values, int sqlerrcode, const char *reason);
extern bool hi_listener_standby(char **answer);

/* libmicrohttpd's callbacks (listener_request.c), for files that include microhttpd.h */
#ifdef MHD_VERSION
extern enum MHD_Result hi_listener_access(void *cls, struct MHD_Connection *c, const char *url,
										  const char *method, const char *version,
										  const char *upload_data, size_t *upload_data_size, void **req_cls);
extern void hi_listener_completed(void *cls, struct MHD_Connection *c, void **req_cls,
								  enum MHD_RequestTerminationCode toe);
#endif

#endif							/* HI_LISTENER_H */
