/*-------------------------------------------------------------------------
 * engine.c
 *	  The delivery engine. Claimed outbox items walk through their steps
 *	  (token, lookup, create; or ticket and actions for a sync), each step
 *	  one HTTP request on libcurl's multi interface, so that many
 *	  integrations progress in parallel while each integration has at most
 *	  halo_itsm.max_requests_per_instance items in progress. The engine
 *	  waits on the process latch and curl's sockets together, so a commit
 *	  that queues work wakes it at once. Submitted items wait in a queue
 *	  until their integration has a free lane and the global limit
 *	  (halo_itsm.max_concurrent_requests) allows: the worker claims one
 *	  lane's worth of items ahead, so that a lane goes on with its next
 *	  item the moment an answer arrives instead of waiting for the
 *	  database round trip. Tokens are fetched here and cached per
 *	  integration until shortly before they expire (a tenth of their
 *	  lifetime, at most a minute), from the authorisation server that is
 *	  configured, or discovered once with GET /api/authinfo (token.c; found
 *	  anew when the settings change or a token request suggests the URL is
 *	  wrong); the integrations, their authorisation servers,
 *	  tokens and request budgets are kept in instance.c. Finished items are
 *	  handed back with their outcome; recording them is the caller's
 *	  business (store.c). Every answer is parsed here, where a failure is
 *	  caught: an answer that cannot be used fails its item (retried, then
 *	  dead with the reason), never the process.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>

#include <curl/curl.h>

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "halo_itsm.h"
#include "hi_answer.h"
#include "hi_backoff.h"
#include "hi_compat.h"
#include "hi_engine.h"
#include "hi_instance.h"
#include "hi_http.h"
#include "hi_json.h"
#include "hi_token.h"

/*
 * The lookup after an ambiguous failure (a create that may have reached
 * Halo). List items carry Halo's list columns only, never
 * third_party_id_string, so a list gives candidates and each candidate is
 * confirmed with GET /api/Tickets/{id}. Lists are asked newest first: the
 * ticket an earlier attempt created is among the newest. First GET
 * /api/Tickets filtered by third_party_id_string (newer Halo honours it):
 * an empty list means no such ticket; up to LOOKUP_TPID_PAGE items are
 * confirmed; a longer list means the filter was ignored. Then GET /api/Tickets?search=, newest
 * first, LOOKUP_SEARCH_PAGE items a page: the term is the sid when the
 * summary sent holds it (a title template with {{sid}}), else the summary
 * itself. At most LOOKUP_MAX_CONFIRMS confirmations per lookup; when more
 * candidates remain, the item is dead (nothing sent) rather than risk a
 * second ticket. So a lookup costs at most 1 + 5 + 3 + 50 requests.
 */
#define LOOKUP_TPID_PAGE 5
#define LOOKUP_SEARCH_PAGE 25
#define LOOKUP_MAX_CONFIRMS 50

static MemoryContext engine_cxt = NULL;
static CURLM *multi = NULL;
static HiItem *finished_head = NULL;
static HiItem *finished_tail = NULL;
static int	n_active = 0;		/* items started, across integrations */
static HiItem *waiting_head = NULL;	/* submitted, not started yet (FIFO) */
static HiItem *waiting_tail = NULL;
static int	n_waiting = 0;
static int	curl_epfd = -1;		/* epoll set of the sockets libcurl wants watched */
static WaitEventSet *wait_set = NULL;	/* the latch, postmaster death and curl_epfd */
static TimestampTz timer_deadline = -1;
static HiRequest *in_flight = NULL;	/* requests added to the multi handle */

static void EngineInit(void);
static void EngineKick(void);
static void EnginePump(void);
static bool StepMaySend(HiItem *item, TimestampTz now);
static HiRequest *BuildTokenRequest(HiItem *item);
static HiRequest *BuildLookupRequest(HiItem *item);
static HiRequest *BuildTicketRequest(HiItem *item, int64 ticket_id);
static HiRequest *BuildCreateRequest(HiItem *item);
static HiRequest *BuildActionsRequest(HiItem *item);
static HiRequest *BuildStepRequest(HiItem *item);
static void SendRequest(HiItem *item, HiRequest *req);
static void StartStep(HiItem *item);
static void OnResponse(HiItem *item, HiRequest *req);
static void OnFailure(HiItem *item, HiRequest *req);
static void OnTokenAnswer(HiItem *item, HiRequest *req);
static void OnAuthinfoAnswer(HiItem *item, HiRequest *req);
static void ReleaseTokenWaiters(HiItem *waiters);
static void OnLookupAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why);
static void OnConfirmAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why);
static void OnCreateAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why);
static void OnTicketAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why);
static void OnActionsAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why);
static void OnActionAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why);
static bool ActionsAnswerOk(Jsonb *jb);
static void LookupBegin(HiItem *item);
static void LookupNext(HiItem *item);
static void FinishFailed(HiItem *item, char *desc, bool retryable, long retry_after_ms);
static void FailItem(HiItem *item, HiRequest *req);
static void BadAnswer(HiItem *item, HiRequest *req, const char *why);
static void FinishItem(HiItem *item, HiOutcome outcome);
static void QueuePush(HiItem **head, HiItem **tail, HiItem *item);
static void ReadMultiInfo(void);
static int	SocketCallback(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
static int	TimerCallback(CURLM *m, long timeout_ms, void *userp);

/*
 * Creates the engine's memory context, instance table, wait set and multi
 * handle once. libcurl's sockets live in an epoll set of their own, which
 * the wait set watches as one descriptor: the wait set is built once, and
 * a socket costs one epoll_ctl when libcurl changes what it waits for.
 */
static void
EngineInit(void)
{
	if (multi != NULL)
		return;
	hi_http_global_init();
	if (engine_cxt == NULL)
	{
		engine_cxt = AllocSetContextCreate(TopMemoryContext, "halo_itsm engine", ALLOCSET_DEFAULT_SIZES);
		hi_instances_init(engine_cxt);
	}
	if (curl_epfd < 0)
	{
		if (!AcquireExternalFD())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("halo_itsm: no file descriptor left for the delivery engine"),
					 errhint("Raise max_files_per_process or the open files limit of the server.")));
		curl_epfd = epoll_create1(EPOLL_CLOEXEC);
		if (curl_epfd < 0)
		{
			ReleaseExternalFD();
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("halo_itsm: could not create an epoll set for the delivery engine: %m"),
					 errhint("Raise max_files_per_process or the open files limit of the server.")));
		}
	}
	if (wait_set == NULL)
	{
		wait_set = hi_create_wait_event_set(engine_cxt, 3);
		AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, curl_epfd, NULL, NULL);
	}
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, SocketCallback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, TimerCallback);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	/*
	 * Idle connections kept for reuse. Every POST takes a fresh connection
	 * (http.c), so without a bound the cache fills with idle sockets until
	 * the process runs out of file descriptors; a few more than the
	 * requests in flight is plenty.
	 */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) hi_max_concurrent_requests + 16L);
}

/* A new, empty item with its own memory context. */
HiItem *
hi_item_new(void)
{
	MemoryContext cxt;
	HiItem	   *item;

	EngineInit();
	cxt = AllocSetContextCreate(engine_cxt, "halo_itsm item", ALLOCSET_SMALL_SIZES);
	item = MemoryContextAllocZero(cxt, sizeof(HiItem));
	item->cxt = cxt;
	item->retry_in_ms = 0;
	return item;
}

/* Frees an item, wiping its copy of the client secret first. */
void
hi_item_free(HiItem *item)
{
	if (item->client_secret)
		explicit_bzero(item->client_secret, strlen(item->client_secret));
	MemoryContextDelete(item->cxt);
}

/* Takes a claimed item; it starts as soon as its integration has a free lane. */
void
hi_engine_submit(HiItem *item)
{
	EngineInit();
	item->inst = hi_instance_for(item);
	item->inst->held++;
	item->outcome = HI_OUT_NONE;
	if (item->kind == HI_KIND_SYNC)
		item->step = HI_STEP_GET_TICKET;
	else if (item->kind == HI_KIND_UPDATE)
		item->step = HI_STEP_CREATE;	/* the ticket with its id: sending it twice is harmless */
	else if (item->kind == HI_KIND_NOTE || item->kind == HI_KIND_CLOSE)
		item->step = item->maybe_sent ? HI_STEP_FIND_ACTION : HI_STEP_POST_ACTION;
	else if (item->maybe_sent)
		LookupBegin(item);
	else
		item->step = HI_STEP_CREATE;
	QueuePush(&waiting_head, &waiting_tail, item);
	n_waiting++;
	EngineKick();
}

/* Submits a claimed list of items (linked by next), in order. */
void
hi_engine_submit_all(HiItem *items)
{
	while (items)
	{
		HiItem	   *item = items;

		items = item->next;
		item->next = NULL;
		hi_engine_submit(item);
	}
}

/*
 * Starts waiting items, oldest first, whose integration has a free lane,
 * while the global limit allows. An integration's items start in the order
 * they were claimed.
 */
static void
EngineKick(void)
{
	HiItem	   *item = waiting_head;
	HiItem	   *prev = NULL;

	while (item && n_active < hi_max_concurrent_requests)
	{
		HiItem	   *next = item->next;

		if (item->inst->active >= hi_max_requests_per_instance)
		{
			prev = item;
			item = next;
			continue;
		}
		if (prev)
			prev->next = next;
		else
			waiting_head = next;
		if (waiting_tail == item)
			waiting_tail = prev;
		n_waiting--;
		item->next = NULL;
		item->inst->active++;
		n_active++;
		StartStep(item);
		item = next;
	}
}

/* Number of items the engine holds: started or waiting to start. */
int
hi_engine_active(void)
{
	return n_active + n_waiting;
}

/*
 * How many more items the worker should claim now: room for every lane the
 * global limit allows, plus as many waiting to take over a lane at once.
 */
int
hi_engine_claim_room(void)
{
	return 2 * hi_max_concurrent_requests - (n_active + n_waiting);
}

/*
 * Settles what must happen before the item's current step can send: the
 * item is dead when its case or detection is gone, waits for a token
 * another item is fetching, fetches one first, or goes back to the queue
 * when the integration's request budget is spent. True when the step (or
 * the token step put before it) may send now.
 */
static bool
StepMaySend(HiItem *item, TimestampTz now)
{
	HiInstance *in = item->inst;
	long		wait_ms;

	if (item->kind != HI_KIND_SYNC && item->sid == NULL)
	{
		/* its case or detection was deleted after the claim, or bypassing the triggers */
		item->error = MemoryContextStrdup(item->cxt, "halo_itsm: the case or detection of this outbox item no longer exists; nothing was sent");
		FinishItem(item, HI_OUT_DEAD);
		return false;
	}
	/* in->token_expires is when to renew; a token this item just fetched is used at least once */
	if (item->step != HI_STEP_TOKEN && item->step != HI_STEP_AUTHINFO &&
		(in->token == NULL || (in->token_expires <= now && !item->token_fresh)))
	{
		if (in->token_fetching)
		{
			/* another item is fetching the token: wait for it */
			item->next = in->token_waiters;
			in->token_waiters = item;
			return false;
		}
		if (in->auth_base == NULL && in->auth_url != NULL)
			hi_instance_set_auth(in, in->auth_url, NULL, HI_AUTH_CONFIGURED);
		item->resume_step = item->step;
		/* no authorisation server yet: discover it first */
		item->step = in->auth_base ? HI_STEP_TOKEN : HI_STEP_AUTHINFO;
	}

	/* counted now, by every process's shared budget, if it is to be sent */
	wait_ms = hi_budget_spend(in, now);
	if (wait_ms > 0)
	{
		item->retry_in_ms = wait_ms;
		item->error = MemoryContextStrdup(item->cxt, "halo_itsm: the request budget of this integration is spent; waiting for the window to move on");
		if (item->step == HI_STEP_TOKEN || item->step == HI_STEP_AUTHINFO)
			item->step = item->resume_step;
		FinishItem(item, HI_OUT_REQUEUE);
		return false;
	}
	return true;
}

/* The token request (token.c): POST {auth_url}/token with the client credentials and scope. */
static HiRequest *
BuildTokenRequest(HiItem *item)
{
	HiInstance *in = item->inst;

	in->token_fetching = true;
	/* the integration's own tenant wins over the one authinfo named */
	return hi_token_request_new(in->base_url, in->auth_base,
								in->tenant ? in->tenant : in->auth_tenant,
								in->client_id, in->client_secret, in->scope);
}

/* A lookup page: GET /api/Tickets by third_party_id_string, or by search. */
static HiRequest *
BuildLookupRequest(HiItem *item)
{
	StringInfoData query;

	initStringInfo(&query);
	if (item->lookup_phase == HI_LOOKUP_BY_TPID)
		appendStringInfo(&query,
						 "third_party_id_string=%s&order=id&orderdesc=true&pageinate=true&page_size=%d&page_no=1",
						 hi_url_escape(item->sid), LOOKUP_TPID_PAGE);
	else
		appendStringInfo(&query,
						 "search=%s&order=id&orderdesc=true&pageinate=true&page_size=%d&page_no=%d",
						 hi_url_escape(item->lookup_search), LOOKUP_SEARCH_PAGE,
						 item->lookup_page);
	return hi_request_new("GET", item->inst->base_url, "/api/Tickets", query.data, item->inst->token, NULL, NULL);
}

/* One ticket: GET /api/Tickets/{id} (a lookup's candidate, or a sync's ticket). */
static HiRequest *
BuildTicketRequest(HiItem *item, int64 ticket_id)
{
	char	   *path = psprintf("/api/Tickets/" INT64_FORMAT, ticket_id);

	return hi_request_new("GET", item->inst->base_url, path, NULL, item->inst->token, NULL, NULL);
}

/* The create: POST /api/Tickets with the ticket object in an array. */
static HiRequest *
BuildCreateRequest(HiItem *item)
{
	char	   *body = psprintf("[%s]", item->payload);

	return hi_request_new("POST", item->inst->base_url, "/api/Tickets", NULL, item->inst->token,
						  "application/json", body);
}

/* A sync's actions: GET /api/Actions of the ticket (note_html comes only when asked for). */
static HiRequest *
BuildActionsRequest(HiItem *item)
{
	char	   *query = psprintf("ticket_id=" INT64_FORMAT "&excludesys=true&includehtmlnote=true",
								 item->halo_ticket_id);

	return hi_request_new("GET", item->inst->base_url, "/api/Actions", query, item->inst->token, NULL, NULL);
}

/* The request of the item's current step, built in the item's memory context. */
static HiRequest *
BuildStepRequest(HiItem *item)
{
	switch (item->step)
	{
		case HI_STEP_AUTHINFO:
			item->inst->token_fetching = true;
			return hi_authinfo_request_new(item->inst->base_url);
		case HI_STEP_TOKEN:
			return BuildTokenRequest(item);
		case HI_STEP_LOOKUP:
			return BuildLookupRequest(item);
		case HI_STEP_CONFIRM:
			return BuildTicketRequest(item, item->candidates[item->next_candidate]);
		case HI_STEP_CREATE:
			return BuildCreateRequest(item);
		case HI_STEP_GET_TICKET:
			return BuildTicketRequest(item, item->halo_ticket_id);
		case HI_STEP_GET_ACTIONS:
		case HI_STEP_FIND_ACTION:
			return BuildActionsRequest(item);
		case HI_STEP_POST_ACTION:
			return hi_request_new("POST", item->inst->base_url, "/api/Actions", NULL, item->inst->token,
								  "application/json", item->action_body);
	}
	elog(ERROR, "halo_itsm: item in an impossible step");
	return NULL;
}

/* Hands a request to libcurl's multi handle (or answers it at once with the failure). */
static void
SendRequest(HiItem *item, HiRequest *req)
{
	req->owner = item;
	if (curl_multi_add_handle(multi, req->easy) == CURLM_OK)
	{
		req->prev = NULL;
		req->next = in_flight;
		if (in_flight)
			in_flight->prev = req;
		in_flight = req;
	}
	else
	{
		hi_request_finish(req, CURLE_FAILED_INIT);
		OnResponse(item, req);
		hi_request_free(req);
	}
}

/* Builds and starts the request of the item's current step (fetching a token first if needed). */
static void
StartStep(HiItem *item)
{
	TimestampTz now = GetCurrentTimestamp();
	HiRequest  *req;
	MemoryContext old;

	if (!StepMaySend(item, now))
		return;
	old = MemoryContextSwitchTo(item->cxt);
	item->token_fresh = false;
	req = BuildStepRequest(item);
	MemoryContextSwitchTo(old);
	SendRequest(item, req);
}

/*
 * Continues an item after an answer that is not a 2xx: renews the token
 * once on a 401, skips a candidate that is gone, gives up a sync whose
 * ticket is gone, and otherwise fails the item (retry or dead).
 */
static void
OnFailure(HiItem *item, HiRequest *req)
{
	bool		answered = req->result == CURLE_OK;

	if (answered && req->status == 401 && !item->token_renewed)
	{
		/* the token expired or was revoked: renew it once and repeat the step */
		item->token_renewed = true;
		hi_instance_set_token(item->inst, NULL, 0);
		StartStep(item);
	}
	else if (answered && req->status == 404 && item->step == HI_STEP_GET_TICKET)
	{
		item->http_status = 404;
		item->error = MemoryContextStrdup(item->cxt, "halo_itsm: the ticket no longer exists in Halo; nothing to sync");
		FinishItem(item, HI_OUT_DEAD);
	}
	else if (answered && req->status == 404 && item->step == HI_STEP_CONFIRM)
	{
		/* the candidate is gone (deleted since the list): not ours */
		item->next_candidate++;
		LookupNext(item);
	}
	else
		FailItem(item, req);
}

/* A candidate's ticket: ours (found), someone else's (next), or unusable. */
static void
OnConfirmAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why)
{
	int			r = jb ? hi_json_ticket_is(jb, item->sid) : -1;

	if (r == 1)
	{
		item->result_ticket_id = item->candidates[item->next_candidate];
		FinishItem(item, HI_OUT_FOUND);
	}
	else if (r == 0)
	{
		item->next_candidate++;
		LookupNext(item);
	}
	else
		BadAnswer(item, req, why ? why : "it is not a ticket object");
}

/* The create's answer: the new ticket's id, or an answer to look behind. */
static void
OnCreateAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why)
{
	int64		id;

	if (jb && hi_json_get_int64(hi_json_first_object(jb), "id", &id) && id > 0)
	{
		item->result_ticket_id = id;
		FinishItem(item, HI_OUT_CREATED);
	}
	else
	{
		/* Halo took the request but its answer has no id: look before sending again */
		BadAnswer(item, req, why ? why : "it has no ticket id");
	}
}

/* A sync's ticket: kept, and the actions asked for next. */
static void
OnTicketAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why)
{
	if (jb == NULL || !JsonContainerIsObject(&jb->root))
	{
		BadAnswer(item, req, why ? why : "it is not a ticket object");
		return;
	}
	item->ticket_jb = jb;
	item->step = HI_STEP_GET_ACTIONS;
	StartStep(item);
}

/* A sync's actions: kept, and the item synced. */
static void
OnActionsAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why)
{
	if (jb == NULL || !ActionsAnswerOk(jb))
	{
		BadAnswer(item, req, why ? why : "it is not a list of actions");
		return;
	}
	item->actions_jb = jb;
	FinishItem(item, HI_OUT_SYNCED);
}

/*
 * A note's or close's answer: the posted action's id (done), or, after an
 * ambiguous failure, the ticket's actions: the one an earlier attempt
 * posted (found), else the action is posted now.
 */
static void
OnActionAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why)
{
	int64		id = 0;

	if (item->step == HI_STEP_FIND_ACTION)
	{
		id = hi_followup_find(item, jb);
		if (id == 0)
		{
			item->step = HI_STEP_POST_ACTION;
			StartStep(item);
			return;
		}
		if (id < 0)
		{
			BadAnswer(item, req, why ? why : "it is not a list of actions");
			return;
		}
		item->result_ticket_id = id;
		FinishItem(item, HI_OUT_FOUND);
		return;
	}
	if (jb && hi_json_get_int64(hi_json_first_object(jb), "id", &id) && id > 0)
	{
		item->result_ticket_id = id;
		FinishItem(item, HI_OUT_CREATED);
	}
	else
		BadAnswer(item, req, why ? why : "it has no action id");
}

/* Continues an item after the answer to its current step. */
static void
OnResponse(HiItem *item, HiRequest *req)
{
	Jsonb	   *jb;
	char	   *why = NULL;
	MemoryContext old;

	if (item->step == HI_STEP_TOKEN)
	{
		OnTokenAnswer(item, req);
		return;
	}
	if (item->step == HI_STEP_AUTHINFO)
	{
		OnAuthinfoAnswer(item, req);
		return;
	}
	if (!(req->result == CURLE_OK && req->status >= 200 && req->status < 300))
	{
		OnFailure(item, req);
		return;
	}

	item->http_status = (int) req->status;
	old = MemoryContextSwitchTo(item->cxt);
	jb = hi_json_parse_answer(req->body, req->body_len, &why);
	switch (item->step)
	{
		case HI_STEP_LOOKUP:
			OnLookupAnswer(item, req, jb, why);
			break;
		case HI_STEP_CONFIRM:
			OnConfirmAnswer(item, req, jb, why);
			break;
		case HI_STEP_CREATE:
			OnCreateAnswer(item, req, jb, why);
			break;
		case HI_STEP_GET_TICKET:
			OnTicketAnswer(item, req, jb, why);
			break;
		case HI_STEP_GET_ACTIONS:
			OnActionsAnswer(item, req, jb, why);
			break;
		case HI_STEP_POST_ACTION:
		case HI_STEP_FIND_ACTION:
			OnActionAnswer(item, req, jb, why);
			break;
		default:
			elog(ERROR, "halo_itsm: answer for an item in an impossible step");
	}
	MemoryContextSwitchTo(old);
}

/*
 * Starts the lookup of an item whose earlier create may have reached Halo:
 * by third_party_id_string first; the search term for the second phase is
 * the sid when the summary sent holds it, else that summary.
 */
static void
LookupBegin(HiItem *item)
{
	MemoryContext old = MemoryContextSwitchTo(item->cxt);
	Jsonb	   *payload = item->payload ? hi_json_parse(item->payload) : NULL;
	char	   *summary = payload ? hi_json_get_text(&payload->root, "summary") : NULL;

	item->step = HI_STEP_LOOKUP;
	item->lookup_phase = HI_LOOKUP_BY_TPID;
	item->lookup_page = 1;
	item->n_candidates = item->next_candidate = item->confirms = 0;
	item->lookup_more = false;
	if (item->candidates == NULL)
		item->candidates = palloc(sizeof(int64) * Max(LOOKUP_TPID_PAGE, LOOKUP_SEARCH_PAGE));
	if (summary == NULL || (item->sid && strstr(summary, item->sid) != NULL))
		item->lookup_search = item->sid;
	else
		item->lookup_search = summary;
	MemoryContextSwitchTo(old);
}

/*
 * Takes a ticket list answer of the lookup: its items become the
 * candidates to confirm (see the comment on LOOKUP_TPID_PAGE).
 */
static void
OnLookupAnswer(HiItem *item, HiRequest *req, Jsonb *jb, const char *why)
{
	int64		record_count = -1;
	int			max = item->lookup_phase == HI_LOOKUP_BY_TPID ? LOOKUP_TPID_PAGE : LOOKUP_SEARCH_PAGE;
	int			n = jb ? hi_json_ticket_ids(jb, item->candidates, max, &record_count) : -1;

	if (n < 0)
	{
		BadAnswer(item, req, why ? why : "it is not a ticket list with usable ids");
		return;
	}
	item->next_candidate = 0;
	item->n_candidates = Min(n, max);
	item->lookup_more = false;
	if (item->lookup_phase == HI_LOOKUP_BY_TPID)
	{
		if (n == 0)
		{
			/* filtered or not, no ticket claims our sid: create it */
			item->step = HI_STEP_CREATE;
			StartStep(item);
			return;
		}
		if (n > max || record_count > max)
			item->n_candidates = 0; /* the filter was ignored: go on with the search */
	}
	else
		item->lookup_more = n >= max &&
			(record_count < 0 || (int64) item->lookup_page * max < record_count);
	LookupNext(item);
}

/*
 * Moves a lookup on: confirms the next candidate, else reads the next page,
 * else goes from the third_party_id_string phase to the search, else
 * creates the ticket (no earlier attempt created it). Past
 * LOOKUP_MAX_CONFIRMS the item is dead instead, nothing sent.
 */
static void
LookupNext(HiItem *item)
{
	if (item->next_candidate < item->n_candidates || item->lookup_more)
	{
		if (item->confirms >= LOOKUP_MAX_CONFIRMS)
		{
			MemoryContext old = MemoryContextSwitchTo(item->cxt);

			item->error = psprintf("halo_itsm: could not tell whether an earlier attempt created the ticket of \"%s\": "
								   "%d tickets found by Halo's search for \"%s\" were read without finding it, and more match; "
								   "nothing was sent, to avoid a second ticket "
								   "(check Halo for a ticket whose third party id is the sid; SELECT halo_itsm.retry() looks again)",
								   item->sid, item->confirms, item->lookup_search);
			MemoryContextSwitchTo(old);
			FinishItem(item, HI_OUT_DEAD);
			return;
		}
		if (item->next_candidate < item->n_candidates)
		{
			item->confirms++;
			item->step = HI_STEP_CONFIRM;
		}
		else
		{
			item->lookup_page++;
			item->step = HI_STEP_LOOKUP;
		}
		StartStep(item);
		return;
	}
	if (item->lookup_phase == HI_LOOKUP_BY_TPID)
	{
		item->lookup_phase = HI_LOOKUP_BY_SEARCH;
		item->lookup_page = 1;
		item->step = HI_STEP_LOOKUP;
	}
	else
		item->step = HI_STEP_CREATE;
	StartStep(item);
}

/*
 * Whether a failed item is tried again: while the failure is retryable
 * and attempts remain, it is, after the backoff (or the retry_after_ms
 * Halo asked for, when >= 0) set in item->retry_in_ms, and HI_OUT_RETRY
 * is returned; otherwise HI_OUT_DEAD.
 */
HiOutcome
hi_item_retry_or_dead(HiItem *item, bool retryable, long retry_after_ms)
{
	if (!retryable || item->attempts >= hi_max_attempts)
		return HI_OUT_DEAD;
	item->retry_in_ms = hi_backoff_delay_ms(item->attempts, hi_backoff_base_ms, hi_backoff_max_ms,
											pg_prng_double(&pg_global_prng_state), retry_after_ms);
	return HI_OUT_RETRY;
}

/*
 * Finishes a failed item with desc as its reason: retried or dead (see
 * hi_item_retry_or_dead); a retryable failure out of attempts says so.
 * Runs in the item's memory context.
 */
static void
FinishFailed(HiItem *item, char *desc, bool retryable, long retry_after_ms)
{
	HiOutcome	outcome = hi_item_retry_or_dead(item, retryable, retry_after_ms);

	if (outcome == HI_OUT_DEAD && retryable)
		item->error = psprintf("%s (gave up after %d attempts; SELECT halo_itsm.retry() tries again)", desc, item->attempts);
	else
		item->error = desc;
	FinishItem(item, outcome);
}

/* Finishes an item whose request failed: retry with backoff, or dead. */
static void
FailItem(HiItem *item, HiRequest *req)
{
	bool		retryable = hi_request_is_retryable(req) || item->step == HI_STEP_TOKEN ||
		item->step == HI_STEP_AUTHINFO;
	char	   *desc;
	MemoryContext old = MemoryContextSwitchTo(item->cxt);

	item->http_status = (int) req->status;
	if (item->step == HI_STEP_TOKEN && hi_token_scope_refused(req))
		desc = hi_token_failure_describe(req, item->inst->scope, false);
	else
		desc = hi_request_describe(req);
	if ((item->step == HI_STEP_CREATE || item->step == HI_STEP_POST_ACTION) &&
		hi_request_may_have_reached_halo(req))
		item->outcome_maybe_sent = true;
	FinishFailed(item, desc, retryable, req->retry_after_ms);
	MemoryContextSwitchTo(old);
}

/*
 * Finishes an item whose 2xx answer cannot be used (not JSON, not the
 * shape asked for, a field of the wrong type): like a server error, it is
 * retried with backoff and dead after halo_itsm.max_attempts, with why and
 * the start of the answer as the reason. A create (or the lookup standing
 * for one) may have reached Halo, so the next attempt looks first.
 */
static void
BadAnswer(HiItem *item, HiRequest *req, const char *why)
{
	MemoryContext old = MemoryContextSwitchTo(item->cxt);
	/* a token answer is not quoted: whatever it holds may be a secret */
	char	   *desc = psprintf("halo_itsm: Halo's answer %ld to %s cannot be used: %s; it reads: %s",
								req->status, req->path, why,
								item->step == HI_STEP_TOKEN ? "(not shown: it may hold a token)" :
								hi_answer_excerpt(req, 200));

	item->http_status = (int) req->status;
	if (item->step == HI_STEP_CREATE || item->step == HI_STEP_LOOKUP || item->step == HI_STEP_CONFIRM ||
		item->step == HI_STEP_POST_ACTION || item->step == HI_STEP_FIND_ACTION)
		item->outcome_maybe_sent = true;
	if (item->step == HI_STEP_TOKEN || item->step == HI_STEP_AUTHINFO)
		item->step = item->resume_step;
	FinishFailed(item, desc, true, -1);
	MemoryContextSwitchTo(old);
}

/* True when an actions answer is {"actions": [...], ...} or a bare array. */
static bool
ActionsAnswerOk(Jsonb *jb)
{
	JsonbContainer *a;

	if (JsonContainerIsArray(&jb->root))
		return !JsonContainerIsScalar(&jb->root);
	a = hi_json_get_container(&jb->root, "actions");
	return a != NULL && JsonContainerIsArray(a) && !JsonContainerIsScalar(a);
}

/* Handles the answer to a token request, for the item and those waiting on it. */
static void
OnTokenAnswer(HiItem *item, HiRequest *req)
{
	HiInstance *in = item->inst;
	HiItem	   *waiters = in->token_waiters;
	bool		answered = req->result == CURLE_OK && req->status >= 200 && req->status < 300;
	bool		ok = false;
	char	   *why = NULL;

	in->token_fetching = false;
	in->token_waiters = NULL;
	if (answered)
	{
		MemoryContext old = MemoryContextSwitchTo(item->cxt);
		Jsonb	   *jb = hi_json_parse_answer(req->body, req->body_len, &why);
		char	   *token = jb ? hi_json_get_text(&jb->root, "access_token") : NULL;
		int64		expires_in = 0;
		bool		have;

		if (token && hi_token_is_usable(token, strlen(token)))
		{
			/* expires_in clamped to 1 s .. a day; renewed a tenth of it (at most 60 s) early */
			have = hi_json_get_int64(&jb->root, "expires_in", &expires_in);
			hi_instance_set_token(in, token, GetCurrentTimestamp() +
								  hi_token_renew_after_us(hi_token_lifetime_s(have, expires_in)));
			item->token_fresh = true;
			ok = true;
		}
		else if (jb)
			why = token ? "its access_token is empty, too long or holds characters a header cannot carry" :
				"it has no access_token string";
		if (token)
			explicit_bzero(token, strlen(token));
		MemoryContextSwitchTo(old);
	}

	if (ok)
	{
		item->step = item->resume_step;
		StartStep(item);
	}
	else if (answered)
		BadAnswer(item, req, why);	/* a 2xx without a usable token */
	else
	{
		/* no such host, port or path: discover the authorisation server anew next time */
		if (in->auth_source != HI_AUTH_CONFIGURED && hi_token_url_suspect(req))
			hi_instance_set_auth(in, NULL, NULL, HI_AUTH_UNKNOWN);
		FailItem(item, req);
	}
	ReleaseTokenWaiters(waiters);
}

/* The items that waited for a token go on with it, or try to fetch one themselves. */
static void
ReleaseTokenWaiters(HiItem *waiters)
{
	while (waiters)
	{
		HiItem	   *w = waiters;

		waiters = w->next;
		w->next = NULL;
		StartStep(w);
	}
}

/*
 * Handles the answer to GET /api/authinfo: the authorisation server it
 * names (checked like a configured one), or {instance}/auth when the
 * instance does not offer authinfo; then the item fetches its token. An
 * answer that cannot be used fails the item with the reason (retried, then
 * dead), like any token failure; the secret goes nowhere.
 */
static void
OnAuthinfoAnswer(HiItem *item, HiRequest *req)
{
	HiInstance *in = item->inst;
	HiItem	   *waiters = in->token_waiters;
	MemoryContext old = MemoryContextSwitchTo(item->cxt);
	char	   *base;
	char	   *tenant;
	char	   *why;
	HiAuthinfoResult res = hi_authinfo_answer(req, &base, &tenant, &why);

	MemoryContextSwitchTo(old);
	in->token_fetching = false;
	in->token_waiters = NULL;
	if (res == HI_AUTHINFO_FOUND)
		hi_instance_set_auth(in, base, tenant, HI_AUTH_DISCOVERED);
	else if (res == HI_AUTHINFO_NOT_OFFERED)
		hi_instance_set_auth(in, hi_auth_default_base(in->base_url), NULL, HI_AUTH_DEFAULT);
	if (res != HI_AUTHINFO_FAILED)
	{
		item->step = HI_STEP_TOKEN;
		StartStep(item);
	}
	else if (why != NULL)
		BadAnswer(item, req, why);	/* a 2xx that names no usable server */
	else
		FailItem(item, req);
	ReleaseTokenWaiters(waiters);
}

/* Hands an item over to the finished list. */
static void
FinishItem(HiItem *item, HiOutcome outcome)
{
	item->outcome = outcome;
	item->inst->active--;
	item->inst->held--;
	n_active--;
	QueuePush(&finished_head, &finished_tail, item);
}

/* Appends an item to a list given by its head and tail. */
static void
QueuePush(HiItem **head, HiItem **tail, HiItem *item)
{
	item->next = NULL;
	if (*tail)
		(*tail)->next = item;
	else
		*head = item;
	*tail = item;
}

/* Takes the next finished item, or NULL. */
HiItem *
hi_engine_pop_finished(void)
{
	HiItem	   *item = finished_head;

	if (item)
	{
		finished_head = item->next;
		if (finished_head == NULL)
			finished_tail = NULL;
		item->next = NULL;
	}
	return item;
}

/* True when finished items wait to be recorded. */
bool
hi_engine_pop_finished_peek(void)
{
	return finished_head != NULL;
}

/*
 * libcurl socket callback: adds, changes or removes a socket in the epoll
 * set (socketp marks the sockets already in it). It must not raise errors:
 * a failed epoll_ctl shows up as a transfer that times out.
 */
static int
SocketCallback(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		if (socketp)
		{
			epoll_ctl(curl_epfd, EPOLL_CTL_DEL, s, NULL);
			curl_multi_assign(multi, s, NULL);
		}
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (epoll_ctl(curl_epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) < 0)
	{
		/* the socket was closed and its number reused, or never added */
		if (errno == EEXIST)
			epoll_ctl(curl_epfd, EPOLL_CTL_MOD, s, &ev);
		else if (errno == ENOENT)
			epoll_ctl(curl_epfd, EPOLL_CTL_ADD, s, &ev);
	}
	if (socketp == NULL)
		curl_multi_assign(multi, s, &curl_epfd);
	return 0;
}

/* libcurl timer callback: remembers when curl wants to be called back. */
static int
TimerCallback(CURLM *m, long timeout_ms, void *userp)
{
	timer_deadline = timeout_ms < 0 ? -1 : GetCurrentTimestamp() + (TimestampTz) timeout_ms * 1000;
	return 0;
}

/* Collects finished transfers and moves their items on. */
static void
ReadMultiInfo(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		HiRequest  *req = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		curl_multi_remove_handle(multi, msg->easy_handle);
		if (req->prev)
			req->prev->next = req->next;
		else
			in_flight = req->next;
		if (req->next)
			req->next->prev = req->prev;
		hi_request_finish(req, msg->data.result);
		OnResponse((HiItem *) req->owner, req);
		hi_request_free(req);
	}
}

/*
 * Waits up to timeout_ms for the latch, curl's sockets or curl's timer,
 * and moves transfers on. Returns true when the latch was set (it is reset
 * here; the caller checks for interrupts and new work).
 */
bool
hi_engine_wait(long timeout_ms)
{
	WaitEvent	events[3];
	int			n,
				i;
	bool		latch = false;
	TimestampTz now = GetCurrentTimestamp();

	EngineInit();
	if (timer_deadline >= 0)
	{
		long		t = (long) ((timer_deadline - now + 999) / 1000);

		timeout_ms = Min(timeout_ms, Max(t, 0));
	}
	n = WaitEventSetWait(wait_set, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
		if (events[i].events & WL_LATCH_SET)
			latch = true;
	if (latch)
		ResetLatch(MyLatch);
	EnginePump();
	return latch;
}

/*
 * Moves transfers on without waiting, for a caller in the middle of a long
 * database round (worker.c): answers that arrived are read, and the lanes
 * they freed go on with their waiting items now rather than after the
 * round. Sends only items submitted before (claimed in a transaction that
 * committed).
 */
void
hi_engine_pump(void)
{
	if (multi != NULL)
		EnginePump();
}

/*
 * Moves transfers on until nothing more is ready without waiting: an
 * answer frees a lane, a waiting item takes it, and its connection and
 * request go out now rather than after the caller's database round.
 */
static void
EnginePump(void)
{
	struct epoll_event ready[64];
	int			i,
				pass,
				running;

	for (pass = 0; pass < 8; pass++)
	{
		bool		progress = false;
		int			nready = epoll_wait(curl_epfd, ready, lengthof(ready), 0);

		for (i = 0; i < nready; i++)
		{
			int			what = ((ready[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
				((ready[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
				((ready[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);

			curl_multi_socket_action(multi, ready[i].data.fd, what, &running);
			progress = true;
		}
		if (timer_deadline >= 0 && GetCurrentTimestamp() >= timer_deadline)
		{
			timer_deadline = -1;
			curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
			progress = true;
		}
		ReadMultiInfo();
		/* lanes freed by the answers go on with waiting items at once */
		EngineKick();
		if (!progress)
			break;
	}
}

/* Abandons every item in progress (after an error); their rows are recovered later. */
void
hi_engine_abort_all(void)
{
	HiItem	   *item;

	if (multi == NULL)
		return;
	while (in_flight)
	{
		HiRequest  *req = in_flight;

		in_flight = req->next;
		curl_multi_remove_handle(multi, req->easy);
		hi_request_free(req);
	}
	curl_multi_cleanup(multi);
	multi = NULL;
	while ((item = hi_engine_pop_finished()) != NULL)
		hi_item_free(item);
	/* items and requests in flight are dropped with the engine's memory */
	if (wait_set)
		FreeWaitEventSet(wait_set);
	wait_set = NULL;
	if (curl_epfd >= 0)
	{
		close(curl_epfd);
		ReleaseExternalFD();
	}
	curl_epfd = -1;
	MemoryContextDelete(engine_cxt);
	engine_cxt = NULL;
	hi_instances_reset();
	n_active = 0;
	waiting_head = waiting_tail = NULL;
	n_waiting = 0;
	timer_deadline = -1;
}
