/*-------------------------------------------------------------------------
 * listener_request.c
 *	  The webhook listener's request callbacks, called by libmicrohttpd from
 *	  MHD_run() in the worker's loop (listener.c):
 *
 *	    POST /halo/<webhook key>   a delivery: ingest_webhook() (listener_apply.c)
 *	    GET|HEAD /healthz          200 when the database can be reached, else 503
 *	    anything else              404; another method on those paths 405
 *
 *	  What is refused before the database is asked (each answered at once,
 *	  without reading the body):
 *	    429  more than halo_itsm.listen_rate_limit requests a minute from the
 *	         client's address (src/core/hi_rate.c: a fixed-size table)
 *	    431  more than halo_itsm.listen_max_headers headers (the library
 *	         itself answers 431 when they exceed listen_max_header_bytes)
 *	    413  a body over halo_itsm.webhook_max_body (by its Content-Length, or
 *	         a chunked one as it grows): read to its end but not kept (so
 *	         that a sender that writes before it reads gets the answer;
 *	         bounded by listen_request_timeout), answered 413 and kept for
 *	         diagnosis like ingest_webhook's WH002 when the key is real
 *	    503  the bodies held over all connections would pass
 *	         halo_itsm.listen_max_buffered (Retry-After)
 *	  The library answers a malformed request (a bad Content-Length, a
 *	  broken request line or chunk) with 400 itself.
 *
 *	  Memory: a request's state and body are malloc'd (no PostgreSQL call
 *	  here may raise through the library's frames) and freed when the
 *	  request ends; the sum of bodies is bounded by listen_max_buffered.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "hi_listener.h"
#include "hi_rate.h"
#include "halo_itsm.h"

#define HI_PREFIX "/halo/"
#define HI_MAX_KEY_LEN 256
#define ERRCODE_HI_BODY_TOO_LARGE MAKE_SQLSTATE('W','H','0','0','2')

/* What a request is for. */
typedef enum HiRoute
{
	HI_ROUTE_WEBHOOK,
	HI_ROUTE_HEALTH
} HiRoute;

/* One request in progress. */
typedef struct HiRequest
{
	HiRoute		route;
	char		key[HI_MAX_KEY_LEN + 1];
	char	   *body;
	size_t		len;
	size_t		cap;
	bool		too_large;		/* the body is over webhook_max_body: read, dropped, answered 413 */
	char		size[32];		/* its Content-Length (text), for the answer */
} HiRequest;

/* The headers of one request, as the library keeps them. */
typedef struct HiHeaderList
{
	int			n;
	int			max;
	const char **names;
	const char **values;
} HiHeaderList;

static HiRateTable rate_table;
static size_t buffered_total = 0;

static enum MHD_Result Respond(struct MHD_Connection *c, int status, const char *json,
							   const char *name, const char *value);
static enum MHD_Result RespondFree(struct MHD_Connection *c, int status, char *json,
								   const char *name, const char *value);
static enum MHD_Result CollectHeader(void *cls, enum MHD_ValueKind kind, const char *key,
									 const char *value);
static bool KeyLooksValid(const char *key);
static int RateCheck(struct MHD_Connection *c);
static bool Headers(struct MHD_Connection *c, HiHeaderList *h);
static enum MHD_Result TooLarge(struct MHD_Connection *c, const char *key, const char *size);
static enum MHD_Result FirstCall(struct MHD_Connection *c, const char *url, const char *method,
								 void **req_cls);
static enum MHD_Result KeepBody(HiRequest *r, const char *data, size_t size);
static enum MHD_Result LastCall(struct MHD_Connection *c, HiRequest *r);

/* Queues a JSON answer (copied), with one extra header when name is set. */
static enum MHD_Result
Respond(struct MHD_Connection *c, int status, const char *json, const char *name, const char *value)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (json == NULL)
		json = "";
	resp = MHD_create_response_from_buffer(strlen(json), (void *) json, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	(void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (name != NULL)
		(void) MHD_add_response_header(resp, name, value);
	ret = MHD_queue_response(c, (unsigned int) status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Queues a malloc'd answer and frees it. */
static enum MHD_Result
RespondFree(struct MHD_Connection *c, int status, char *json, const char *name, const char *value)
{
	enum MHD_Result ret = Respond(c, status, json ? json : "{}", name, value);

	free(json);
	return ret;
}

/* Header iterator: keeps each name and value (pointers into the library's pool). */
static enum MHD_Result
CollectHeader(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	HiHeaderList *h = (HiHeaderList *) cls;

	if (h->n >= h->max)
		return MHD_NO;
	h->names[h->n] = key ? key : "";
	h->values[h->n] = value ? value : "";
	h->n++;
	return MHD_YES;
}

/* True when the key may be one: printable ASCII without '/', not too long. */
static bool
KeyLooksValid(const char *key)
{
	size_t		len = strlen(key);
	size_t		i;

	if (len == 0 || len > HI_MAX_KEY_LEN)
		return false;
	for (i = 0; i < len; i++)
		if (key[i] <= ' ' || key[i] > '~' || key[i] == '/')
			return false;
	return true;
}

/* 0 when the client's address is within the rate limit, else the seconds to wait. */
static int
RateCheck(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = info ? info->client_addr : NULL;
	struct timespec ts;

	if (sa == NULL)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (sa->sa_family == AF_INET)
		return hi_rate_check(&rate_table, (const unsigned char *) &((const struct sockaddr_in *) sa)->sin_addr, 4,
							 ts.tv_sec, hi_listen_rate_limit, 60);
	if (sa->sa_family == AF_INET6)
		return hi_rate_check(&rate_table, (const unsigned char *) &((const struct sockaddr_in6 *) sa)->sin6_addr, 16,
							 ts.tv_sec, hi_listen_rate_limit, 60);
	return 0;
}

/* Collects the request's headers (at most listen_max_headers) into h; false when out of memory. */
static bool
Headers(struct MHD_Connection *c, HiHeaderList *h)
{
	h->n = 0;
	h->max = hi_listen_max_headers;
	h->names = malloc(sizeof(char *) * h->max);
	h->values = malloc(sizeof(char *) * h->max);
	if (h->names == NULL || h->values == NULL)
	{
		free(h->names);
		free(h->values);
		return false;
	}
	(void) MHD_get_connection_values(c, MHD_HEADER_KIND, CollectHeader, h);
	return true;
}

/* Keeps a too-large delivery of a real key for diagnosis, and answers 413. */
static enum MHD_Result
TooLarge(struct MHD_Connection *c, const char *key, const char *size)
{
	HiHeaderList h;
	char		reason[256];
	char		json[320];

	snprintf(reason, sizeof(reason),
			 "halo_itsm: the webhook body has %s bytes, more than halo_itsm.webhook_max_body (%d bytes)",
			 size, hi_webhook_max_body);
	if (Headers(c, &h))
	{
		hi_listener_record_rejection(key, h.n, h.names, h.values, ERRCODE_HI_BODY_TOO_LARGE, reason);
		free(h.names);
		free(h.values);
	}
	ereport(LOG, (errmsg("halo_itsm: the webhook listener answered 413 (SQLSTATE WH002): %s", reason)));
	snprintf(json, sizeof(json), "{\"error\": \"%s\", \"sqlstate\": \"WH002\"}", reason);
	return Respond(c, MHD_HTTP_CONTENT_TOO_LARGE, json, NULL, NULL);
}

/* The first call of a request (headers complete): route it, refuse early, or make its state. */
static enum MHD_Result
FirstCall(struct MHD_Connection *c, const char *url, const char *method, void **req_cls)
{
	HiRequest  *r;
	HiRoute		route;
	const char *cl = NULL;
	bool		too_large = false;
	int			wait;
	char		retry[16];

	if ((wait = RateCheck(c)) > 0)
	{
		snprintf(retry, sizeof(retry), "%d", wait);
		return Respond(c, MHD_HTTP_TOO_MANY_REQUESTS,
					   "{\"error\": \"halo_itsm: too many requests from this address (halo_itsm.listen_rate_limit)\"}",
					   MHD_HTTP_HEADER_RETRY_AFTER, retry);
	}
	if (MHD_get_connection_values(c, MHD_HEADER_KIND, NULL, NULL) > hi_listen_max_headers)
		return Respond(c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
					   "{\"error\": \"halo_itsm: too many request headers (halo_itsm.listen_max_headers)\"}", NULL, NULL);

	if (strcmp(url, "/healthz") == 0)
	{
		if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
			return Respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\": \"method not allowed\"}",
						   MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		route = HI_ROUTE_HEALTH;
	}
	else if (strncmp(url, HI_PREFIX, strlen(HI_PREFIX)) == 0 && KeyLooksValid(url + strlen(HI_PREFIX)))
	{
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			return Respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\": \"method not allowed\"}",
						   MHD_HTTP_HEADER_ALLOW, "POST");
		route = HI_ROUTE_WEBHOOK;
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		too_large = cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long) hi_webhook_max_body;
		if (cl != NULL && !too_large && buffered_total + strtoull(cl, NULL, 10) > (size_t) hi_listen_max_buffered)
			return Respond(c, MHD_HTTP_SERVICE_UNAVAILABLE,
						   "{\"error\": \"halo_itsm: the webhook listener holds too many bodies now (halo_itsm.listen_max_buffered)\"}",
						   MHD_HTTP_HEADER_RETRY_AFTER, "5");
	}
	else
		return Respond(c, MHD_HTTP_NOT_FOUND, "{\"error\": \"not found\"}", NULL, NULL);

	r = calloc(1, sizeof(HiRequest));
	if (r == NULL)
		return MHD_NO;
	r->route = route;
	if (route == HI_ROUTE_WEBHOOK)
		strlcpy(r->key, url + strlen(HI_PREFIX), sizeof(r->key));
	/* a body over the limit is read and dropped (bounded by listen_request_timeout), then
	 * answered 413: a sender that writes the whole body before it reads gets the answer */
	r->too_large = too_large;
	if (too_large)
		strlcpy(r->size, cl, sizeof(r->size));
	*req_cls = r;
	return MHD_YES;
}

/* Keeps a piece of the body (or drops it once the body is too large); MHD_NO closes the connection. */
static enum MHD_Result
KeepBody(HiRequest *r, const char *data, size_t size)
{
	if (r->route != HI_ROUTE_WEBHOOK || r->too_large)
		return MHD_YES;
	if (r->len + size > (size_t) hi_webhook_max_body)
	{
		buffered_total -= r->cap;
		free(r->body);
		r->body = NULL;
		r->len = r->cap = 0;
		r->too_large = true;
		return MHD_YES;
	}
	if (r->len + size > r->cap)
	{
		size_t		cap = Max(r->cap * 2, Max(r->len + size, (size_t) 4096));
		char	   *p;

		cap = Min(cap, (size_t) hi_webhook_max_body);
		if (buffered_total - r->cap + cap > (size_t) hi_listen_max_buffered)
			return MHD_NO;
		p = realloc(r->body, cap);
		if (p == NULL)
			return MHD_NO;
		buffered_total = buffered_total - r->cap + cap;
		r->body = p;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, size);
	r->len += size;
	return MHD_YES;
}

/* The last call: the whole request is there; answer it. */
static enum MHD_Result
LastCall(struct MHD_Connection *c, HiRequest *r)
{
	HiHeaderList h;
	char	   *answer = NULL;
	int			status;

	if (r->route == HI_ROUTE_HEALTH)
	{
		status = hi_listener_health(&answer);
		return RespondFree(c, status, answer, status == 503 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, "30");
	}
	if (r->too_large)
	{
		if (r->size[0] == '\0')
			snprintf(r->size, sizeof(r->size), "more than %d", hi_webhook_max_body);
		return TooLarge(c, r->key, r->size);
	}
	if (!Headers(c, &h))
		return MHD_NO;
	status = hi_listener_apply(r->key, h.n, h.names, h.values, r->body ? r->body : "", r->len, &answer);
	free(h.names);
	free(h.values);
	return RespondFree(c, status, answer, status == 503 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, "30");
}

/* libmicrohttpd's access handler: called once with the headers, per piece of body, and once at the end. */
enum MHD_Result
hi_listener_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				   const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	HiRequest  *r = (HiRequest *) *req_cls;

	if (r == NULL)
		return FirstCall(c, url, method, req_cls);
	if (*upload_data_size > 0)
	{
		enum MHD_Result ret = KeepBody(r, upload_data, *upload_data_size);

		*upload_data_size = 0;
		return ret;
	}
	return LastCall(c, r);
}

/* libmicrohttpd's completion callback: frees the request's state; the connection's next request starts now. */
void
hi_listener_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	HiRequest  *r = (HiRequest *) *req_cls;
	const union MHD_ConnectionInfo *info;

	if (r != NULL)
	{
		buffered_total -= r->cap;
		free(r->body);
		free(r);
		*req_cls = NULL;
	}
	info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (info != NULL)
		hi_listener_conn_touch(info->socket_context);
}
