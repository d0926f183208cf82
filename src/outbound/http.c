/*-------------------------------------------------------------------------
 * http.c
 *	  One HTTP request to Halo with libcurl. Every easy handle gets the same
 *	  outbound policy: https only (http when halo_itsm.allow_http is on), no
 *	  redirects, no credentials in URLs, TLS verified (with an optional CA
 *	  file), timeouts, and no connections to private, loopback or link-local
 *	  addresses unless halo_itsm.allow_private_addresses is on. Also the
 *	  checks of instance and authorisation server URLs (hi_url_problem).
 *	  libcurl's memory is its own (malloc); nothing here goes through palloc
 *	  except the strings handed back to PostgreSQL callers.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_backoff.h"
#include "hi_compat.h"
#include "hi_http.h"
#include "hi_token.h"

#define HI_MAX_RESPONSE (8 * 1024 * 1024)
#define HI_USER_AGENT "halo_itsm/" HI_EXTVERSION " (PostgreSQL extension)"

static bool curl_ready = false;

static char *Strdup(const char *s);
static HiRequest *AllocRequest(const char *method, const char *base_url, const char *path,
							   const char *query, const char *body);
static void SetPolicy(HiRequest *req);
static void SetHeaders(HiRequest *req, const char *bearer, const char *content_type);
static void SetPost(HiRequest *req);
static size_t WriteCallback(char *ptr, size_t size, size_t nmemb, void *userdata);
static size_t HeaderCallback(char *buffer, size_t size, size_t nitems, void *userdata);
static int	ProgressCallback(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
							 curl_off_t ultotal, curl_off_t ulnow);
static bool InterruptWouldRaise(void);
static curl_socket_t OpenSocketCallback(void *clientp, curlsocktype purpose,
										struct curl_sockaddr *address);
static bool AddressIsPrivate(const struct sockaddr *sa);
static long ParseRetryAfter(const char *value);

/* Initialises libcurl once per process. */
void
hi_http_global_init(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("halo_itsm: could not initialise libcurl"),
				 errhint("Check that libcurl and its TLS library are installed correctly.")));
	curl_ready = true;
}

/* Returns a malloc'd copy of s, or raises an out-of-memory error. */
static char *
Strdup(const char *s)
{
	char	   *r = strdup(s);

	if (r == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: out of memory")));
	return r;
}

/* URL-encodes s for a query string (palloc'd). */
char *
hi_url_escape(const char *s)
{
	char	   *e = curl_easy_escape(NULL, s, 0);
	char	   *r;

	if (e == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: out of memory")));
	r = pstrdup(e);
	curl_free(e);
	return r;
}

/* A new request (no handle yet): its path for messages, its URL and a copy of its body, malloc'd. */
static HiRequest *
AllocRequest(const char *method, const char *base_url, const char *path,
			 const char *query, const char *body)
{
	HiRequest  *req = calloc(1, sizeof(HiRequest));
	StringInfoData url;

	if (req == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: out of memory")));
	req->retry_after_ms = -1;
	initStringInfo(&url);
	appendStringInfo(&url, "%s %s", method, path);
	req->path = Strdup(url.data);
	resetStringInfo(&url);
	appendStringInfo(&url, "%s%s", base_url, path);
	if (query && query[0])
		appendStringInfo(&url, "?%s", query);
	req->url = Strdup(url.data);
	pfree(url.data);
	if (body)
		req->post_body = Strdup(body);
	return req;
}

/* Sets halo_itsm's outbound policy and the answer's callbacks on the request's easy handle. */
static void
SetPolicy(HiRequest *req)
{
	CURL	   *easy = req->easy;

	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, hi_allow_http ? "http,https" : "https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	/* an instance URL with user:password@ (stored behind connect()'s back) is refused */
	curl_easy_setopt(easy, CURLOPT_DISALLOW_USERNAME_IN_URL, 1L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) hi_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) hi_request_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (hi_ca_file && hi_ca_file[0])
		curl_easy_setopt(easy, CURLOPT_CAINFO, hi_ca_file);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, HI_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, WriteCallback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, HeaderCallback);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, OpenSocketCallback);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
}

/* Sets the request headers: Accept, the content type and the bearer token when given. */
static void
SetHeaders(HiRequest *req, const char *bearer, const char *content_type)
{
	req->headers = curl_slist_append(req->headers, "Accept: application/json");
	if (content_type)
	{
		char	   *h = psprintf("Content-Type: %s", content_type);

		req->headers = curl_slist_append(req->headers, h);
		pfree(h);
	}
	if (bearer)
	{
		StringInfoData h;

		initStringInfo(&h);
		appendStringInfo(&h, "Authorization: Bearer %s", bearer);
		req->headers = curl_slist_append(req->headers, h.data);
		explicit_bzero(h.data, h.len);
		pfree(h.data);
	}
	/* no "Expect: 100-continue" round trip */
	req->headers = curl_slist_append(req->headers, "Expect:");
	curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
}

/* Makes the request a POST of its body, on a connection of its own. */
static void
SetPost(HiRequest *req)
{
	CURL	   *easy = req->easy;

	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->post_body ? req->post_body : "");
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) (req->post_body ? strlen(req->post_body) : 0));

	/*
	 * A POST is not idempotent. On a reused keep-alive connection that
	 * closes without an answer, libcurl silently sends the request again on
	 * a new connection, although the server may have acted on it (a
	 * duplicate ticket). On a fresh connection it reports the failure
	 * instead, and the engine looks the ticket up before resending. The
	 * connection is closed afterwards rather than cached, so that idle
	 * connections do not pile up in the connection cache.
	 */
	curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
}

/* Builds a request (not started): method, base URL + path + query, optional bearer token and body. */
HiRequest *
hi_request_new(const char *method, const char *base_url, const char *path,
			   const char *query, const char *bearer,
			   const char *content_type, const char *body)
{
	HiRequest  *req;

	hi_http_global_init();
	req = AllocRequest(method, base_url, path, query, body);
	req->easy = curl_easy_init();
	if (req->easy == NULL)
	{
		hi_request_free(req);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: could not create a libcurl handle")));
	}
	SetPolicy(req);
	SetHeaders(req, bearer, content_type);
	if (strcmp(method, "POST") == 0)
		SetPost(req);
	else
		curl_easy_setopt(req->easy, CURLOPT_HTTPGET, 1L);
	return req;
}

/* Frees a request and everything it holds; wipes the body (it may hold secrets). */
void
hi_request_free(HiRequest *req)
{
	if (req == NULL)
		return;
	if (req->easy)
		curl_easy_cleanup(req->easy);
	if (req->headers)
	{
		struct curl_slist *h;

		for (h = req->headers; h; h = h->next)
			explicit_bzero(h->data, strlen(h->data));
		curl_slist_free_all(req->headers);
	}
	if (req->post_body)
	{
		explicit_bzero(req->post_body, strlen(req->post_body));
		free(req->post_body);
	}
	if (req->body)
	{
		explicit_bzero(req->body, req->body_len);
		free(req->body);
	}
	free(req->url);
	free(req->path);
	free(req);
}

/* Records the transfer's result code and HTTP status once libcurl is done with it. */
void
hi_request_finish(HiRequest *req, CURLcode code)
{
	req->result = code;
	if (req->body_too_large && code == CURLE_WRITE_ERROR)
		req->result = CURLE_FILESIZE_EXCEEDED;
	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
	if (req->body == NULL)
	{
		req->body = Strdup("");
		req->body_len = 0;
	}
}

/*
 * True when CHECK_FOR_INTERRUPTS() would raise now: a cancel (also
 * statement_timeout), a termination or a lost client, outside any holdoff.
 * Other pending interrupts (e.g. a catchup) do not stop a transfer.
 */
static bool
InterruptWouldRaise(void)
{
	if (!InterruptPending || InterruptHoldoffCount != 0 || CritSectionCount != 0)
		return false;
	return ProcDiePending || ClientConnectionLost ||
		(QueryCancelPending && QueryCancelHoldoffCount == 0);
}

/*
 * libcurl's progress callback (about once a second at least, more often
 * while data flows): a non-zero return makes curl_easy_perform() stop with
 * CURLE_ABORTED_BY_CALLBACK. It never raises: a longjmp out of libcurl
 * would leave the handle in an undefined state.
 */
static int
ProgressCallback(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
				 curl_off_t ultotal, curl_off_t ulnow)
{
	return InterruptWouldRaise() ? 1 : 0;
}

/*
 * Runs a request to completion in the calling process, staying cancellable:
 * libcurl calls ProgressCallback at least about once a second, which stops
 * the transfer when a cancel or termination is pending; it is then raised
 * here, after libcurl has returned, with req freed (the caller's pointer is
 * gone with the error). test_cancel checks it with an answer 10 s away.
 */
bool
hi_request_perform(HiRequest *req)
{
	CURLcode	code;

	curl_easy_setopt(req->easy, CURLOPT_XFERINFOFUNCTION, ProgressCallback);
	curl_easy_setopt(req->easy, CURLOPT_XFERINFODATA, req);
	curl_easy_setopt(req->easy, CURLOPT_NOPROGRESS, 0L);
	code = curl_easy_perform(req->easy);
	hi_request_finish(req, code);
	PG_TRY();
	{
		CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		hi_request_free(req);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return code == CURLE_OK;
}

/* True when Halo may have acted on the request although no usable answer came. */
bool
hi_request_may_have_reached_halo(const HiRequest *req)
{
	switch (req->result)
	{
		case CURLE_OK:
			return req->status == 408 || req->status >= 500 || (req->status >= 200 && req->status < 300);
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
			return false;
		default:
			return true;
	}
}

/* True when the failure is worth retrying later (network, timeout, 408, 429, 5xx). */
bool
hi_request_is_retryable(const HiRequest *req)
{
	if (req->result != CURLE_OK)
		return true;
	return req->status == 408 || req->status == 429 || req->status >= 500;
}

/* A one-line description of what went wrong, for last_error (palloc'd; never holds secrets). */
char *
hi_request_describe(const HiRequest *req)
{
	StringInfoData s;

	initStringInfo(&s);
	if (req->result != CURLE_OK && req->refused_private)
		appendStringInfo(&s, "halo_itsm: %s refused: the instance host resolves to a private, loopback or link-local address, which halo_itsm.allow_private_addresses forbids",
						 req->path);
	else if (req->result != CURLE_OK)
	{
		appendStringInfo(&s, "halo_itsm: %s failed: %s", req->path,
						 req->errbuf[0] ? req->errbuf : curl_easy_strerror(req->result));
		if (req->result == CURLE_COULDNT_CONNECT)
			appendStringInfoString(&s, " (is the instance URL right and Halo reachable from the database server?)");
		if (req->result == CURLE_LOGIN_DENIED)
			appendStringInfoString(&s, " (the instance URL holds credentials, which halo_itsm never sends: store it without user:password@)");
		if (req->result == CURLE_PEER_FAILED_VERIFICATION || req->result == CURLE_SSL_CACERT_BADFILE)
			appendStringInfoString(&s, " (set halo_itsm.ca_file to the CA that signed Halo's certificate)");
	}
	else
	{
		appendStringInfo(&s, "halo_itsm: Halo answered %ld to %s", req->status, req->path);
		if (req->status == 401)
			appendStringInfoString(&s, " (check the client ID and secret with halo_itsm.set_credentials())");
		else if (req->status == 403)
			appendStringInfoString(&s, " (the API application lacks a permission: give it " HI_DEFAULT_SCOPE ", or the scopes set with halo_itsm.configure_auth())");
		if (req->body_len > 0)
			appendStringInfo(&s, ": %s", hi_answer_excerpt(req, 1000));
	}
	return s.data;
}

/*
 * The start of an answer's body (at most max bytes) as text that is safe
 * to store and print (palloc'd): characters that are not valid UTF-8 (or
 * not ASCII, when the database is not UTF-8) become '?', control
 * characters and NUL bytes become spaces; "..." marks a cut.
 */
char *
hi_answer_excerpt(const HiRequest *req, int max)
{
	StringInfoData s;
	const unsigned char *p = (const unsigned char *) (req->body ? req->body : "");
	size_t		len = req->body ? req->body_len : 0;
	size_t		i = 0;
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;

	initStringInfo(&s);
	while (i < len && s.len < max)
	{
		int			l = (p[i] < 0x80) ? 1 : pg_utf_mblen(p + i);

		if (p[i] < 0x80)
			appendStringInfoChar(&s, (p[i] < 0x20 || p[i] == 0x7f) ? ' ' : (char) p[i]);
		else if (utf8 && (size_t) l <= len - i && pg_utf8_islegal(p + i, l))
			appendBinaryStringInfo(&s, (const char *) p + i, l);
		else
		{
			appendStringInfoChar(&s, '?');
			l = 1;
		}
		i += l;
	}
	if (i < len)
		appendStringInfoString(&s, "...");
	return s.data;
}

/* libcurl write callback: appends to the malloc'd body, refusing oversized answers. */
static size_t
WriteCallback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HiRequest  *req = (HiRequest *) userdata;
	size_t		n = size * nmemb;

	if (req->body_len + n + 1 > HI_MAX_RESPONSE)
	{
		req->body_too_large = true;
		return 0;
	}
	if (req->body_len + n + 1 > req->body_cap)
	{
		size_t		cap = req->body_cap ? req->body_cap : 4096;
		char	   *nb;

		while (cap < req->body_len + n + 1)
			cap *= 2;
		nb = realloc(req->body, cap);
		if (nb == NULL)
			return 0;
		req->body = nb;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, ptr, n);
	req->body_len += n;
	req->body[req->body_len] = '\0';
	return n;
}

/* libcurl header callback: keeps Retry-After. */
static size_t
HeaderCallback(char *buffer, size_t size, size_t nitems, void *userdata)
{
	HiRequest  *req = (HiRequest *) userdata;
	size_t		n = size * nitems;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && n < 256 && pg_strncasecmp(buffer, name, sizeof(name) - 1) == 0)
	{
		char		value[256];
		size_t		len = n - (sizeof(name) - 1);

		memcpy(value, buffer + sizeof(name) - 1, len);
		value[len] = '\0';
		while (len > 0 && (value[len - 1] == '\r' || value[len - 1] == '\n'))
			value[--len] = '\0';
		req->retry_after_ms = ParseRetryAfter(value);
	}
	return n;
}

/* Retry-After as milliseconds: delta-seconds, or an HTTP-date read by PostgreSQL's parser. */
static long
ParseRetryAfter(const char *value)
{
	long		ms = hi_parse_retry_after_seconds(value);
	char		buf[MAXDATELEN + 1];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf,
				dtype,
				tz = 0;
	struct pg_tm tm;
	fsec_t		fsec;
	TimestampTz when;

	if (ms >= 0)
		return ms;
	/* HTTP-date: use PostgreSQL's date parser without raising errors */
	if (ParseDateTime(value, buf, sizeof(buf), field, ftype, MAXDATEFIELDS, &nf) != 0)
		return -1;
	if (hi_decode_datetime(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0 || dtype != DTK_DATE)
		return -1;
	if (tm2timestamp(&tm, fsec, &tz, &when) != 0)
		return -1;
	ms = (long) ((when - GetCurrentTimestamp()) / 1000);
	return ms < 0 ? 0 : ms;
}

/* Whether an address is private, loopback, link-local or unspecified. */
static bool
AddressIsPrivate(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
	{
		uint32		a = ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr);

		return (a >> 24) == 10 || (a >> 24) == 127 || (a >> 24) == 0 ||
			(a >> 20) == (172 << 4 | 1) ||	/* 172.16.0.0/12 */
			(a >> 16) == (192 << 8 | 168) ||
			(a >> 16) == (169 << 8 | 254) ||
			(a >> 22) == (100 << 2 | 1);	/* 100.64.0.0/10 carrier-grade NAT */
	}
	if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a))
		{
			struct sockaddr_in v4;

			memset(&v4, 0, sizeof(v4));
			v4.sin_family = AF_INET;
			memcpy(&v4.sin_addr, &a->s6_addr[12], 4);
			return AddressIsPrivate((struct sockaddr *) &v4);
		}
		return IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
			IN6_IS_ADDR_LINKLOCAL(a) || (a->s6_addr[0] & 0xfe) == 0xfc;
	}
	return true;
}

/* libcurl open-socket callback: refuses private addresses unless allowed. */
static curl_socket_t
OpenSocketCallback(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	HiRequest  *req = (HiRequest *) clientp;

	if (!hi_allow_private_addresses && AddressIsPrivate(&address->addr))
	{
		/* curl overwrites errbuf with its own "Couldn't connect": keep the reason apart */
		req->refused_private = true;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * Examines url as a base URL under the outbound policy (https, http only with
 * halo_itsm.allow_http; no credentials, query or fragment; a host; at most
 * HI_MAX_URL bytes). Returns NULL when it is usable, with *normalised set
 * (palloc'd: scheme://host[:port][/path] without trailing slashes); else what
 * is wrong, with *invalid true when it is not a URL at all. Never raises
 * (but for out of memory): the engine checks discovered URLs with it.
 */
const char *
hi_url_problem(const char *url, char **normalised, bool *invalid)
{
	CURLU	   *u;
	CURLUcode	rc;
	char	   *scheme = NULL,
			   *user = NULL,
			   *password = NULL,
			   *query = NULL,
			   *fragment = NULL,
			   *host = NULL,
			   *port = NULL,
			   *path = NULL;
	const char *problem = NULL;
	StringInfoData out;

	*normalised = NULL;
	*invalid = false;
	if (strlen(url) > HI_MAX_URL)
		return "the URL is longer than " CppAsString2(HI_MAX_URL) " bytes";
	u = curl_url();
	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: out of memory")));
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
	{
		curl_url_cleanup(u);
		*invalid = true;
		return curl_url_strerror(rc);
	}
	curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	curl_url_get(u, CURLUPART_USER, &user, 0);
	curl_url_get(u, CURLUPART_PASSWORD, &password, 0);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
	curl_url_get(u, CURLUPART_HOST, &host, 0);
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	curl_url_get(u, CURLUPART_PATH, &path, 0);

	if (scheme == NULL || (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0))
		problem = "the scheme must be https";
	else if (strcmp(scheme, "http") == 0 && !hi_allow_http)
		problem = "http:// is not allowed (halo_itsm.allow_http is off); Halo must be reached over https";
	else if (user || password)
		problem = "credentials must not be part of the URL";
	else if (query || fragment)
		problem = "the URL must not have a query or fragment";
	else if (host == NULL || host[0] == '\0')
		problem = "the URL has no host";

	if (problem == NULL)
	{
		size_t		plen = path ? strlen(path) : 0;

		while (plen > 0 && path[plen - 1] == '/')
			plen--;
		initStringInfo(&out);
		appendStringInfo(&out, "%s://%s", scheme, host);
		if (port)
			appendStringInfo(&out, ":%s", port);
		appendBinaryStringInfo(&out, path ? path : "", (int) plen);
		*normalised = out.data;
	}
	curl_free(scheme);
	curl_free(user);
	curl_free(password);
	curl_free(query);
	curl_free(fragment);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	return problem;
}

/*
 * Raises the error for a URL hi_url_problem() found unusable: what names
 * the URL ("instance URL"), hint says what to pass.
 */
void
hi_url_error(const char *what, const char *problem, bool invalid, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 invalid ? errmsg("halo_itsm: the %s is not a valid URL: %s", what, problem) :
			 errmsg("halo_itsm: unusable %s: %s", what, problem),
			 errhint("%s", hint)));
}

/* Validates and normalises a Halo instance URL; raises a clear error when it is unusable. */
char *
hi_check_instance_url(const char *url)
{
	bool		invalid;
	char	   *norm;
	const char *problem = hi_url_problem(url, &norm, &invalid);

	if (problem)
		hi_url_error("instance URL", problem, invalid, invalid ?
					 "Pass the address of your Halo instance, e.g. https://yourcompany.halopsa.com." :
					 "Pass the base address of your Halo instance, e.g. https://yourcompany.halopsa.com (no path to /api, no credentials).");
	return norm;
}
