/*-------------------------------------------------------------------------
 * hi_http.h
 *	  One HTTP request to Halo with libcurl: building the easy handle with
 *	  halo_itsm's outbound policy, collecting the answer, describing errors.
 *-------------------------------------------------------------------------
 */
#ifndef HI_HTTP_H
#define HI_HTTP_H

#include <curl/curl.h>

/* A request and, once done, its answer. Buffers are malloc'd (never palloc). */
typedef struct HiRequest
{
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *url;			/* malloc'd */
	char	   *post_body;		/* malloc'd, NULL for GET */
	char	   *path;			/* malloc'd, for messages: "POST /api/Tickets" */
	/* answer */
	char	   *body;			/* malloc'd, NUL-terminated */
	size_t		body_len;
	size_t		body_cap;
	bool		body_too_large;
	long		status;			/* HTTP status, 0 if none */
	CURLcode	result;
	long		retry_after_ms; /* -1 when absent */
	char		errbuf[CURL_ERROR_SIZE];
	bool		refused_private;	/* the open-socket callback refused the address */
	void	   *owner;			/* the item this request works for */
	struct HiRequest *prev;		/* the engine's list of requests in flight */
	struct HiRequest *next;
} HiRequest;

extern void hi_http_global_init(void);
extern HiRequest *hi_request_new(const char *method, const char *base_url, const char *path,
								 const char *query, const char *bearer,
								 const char *content_type, const char *body);
extern void hi_request_free(HiRequest *req);
extern void hi_request_finish(HiRequest *req, CURLcode code);
extern bool hi_request_perform(HiRequest *req);
extern bool hi_request_may_have_reached_halo(const HiRequest *req);
extern bool hi_request_is_retryable(const HiRequest *req);
extern char *hi_request_describe(const HiRequest *req);
extern char *hi_answer_excerpt(const HiRequest *req, int max);
extern char *hi_check_instance_url(const char *url);
extern char *hi_url_escape(const char *s);

#endif							/* HI_HTTP_H */
