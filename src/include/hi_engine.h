/*-------------------------------------------------------------------------
 * hi_engine.h
 *	  The delivery engine (engine.c): outbox items in progress and their
 *	  HTTP exchanges with Halo on libcurl's multi interface. The engine's
 *	  integrations, tokens and request budgets are in hi_instance.h
 *	  (instance.c, the budget counted by budget.c); claiming and recording
 *	  items in hi_store.h (store.c).
 *-------------------------------------------------------------------------
 */
#ifndef HI_ENGINE_H
#define HI_ENGINE_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/uuid.h"

typedef enum HiItemKind
{
	HI_KIND_CASE,
	HI_KIND_DETECTION,
	HI_KIND_SYNC,
	HI_KIND_NOTE,				/* local changes to an existing ticket (followup.c) */
	HI_KIND_CLOSE,
	HI_KIND_UPDATE
} HiItemKind;

typedef enum HiStep
{
	HI_STEP_AUTHINFO,			/* discover the authorisation server (token.c) */
	HI_STEP_TOKEN,
	HI_STEP_LOOKUP,				/* list candidates (engine.c explains the phases) */
	HI_STEP_CONFIRM,			/* read one candidate whole: is it ours? */
	HI_STEP_CREATE,
	HI_STEP_GET_TICKET,
	HI_STEP_GET_ACTIONS,
	HI_STEP_POST_ACTION,		/* a note or close: POST /api/Actions */
	HI_STEP_FIND_ACTION			/* after an ambiguous failure: did it arrive? */
} HiStep;

#define HI_LOOKUP_BY_TPID 0
#define HI_LOOKUP_BY_SEARCH 1

typedef enum HiOutcome
{
	HI_OUT_NONE,
	HI_OUT_CREATED,				/* ticket created */
	HI_OUT_FOUND,				/* an earlier attempt had created it */
	HI_OUT_SYNCED,				/* ticket and actions fetched */
	HI_OUT_RETRY,				/* failed, try again later */
	HI_OUT_DEAD,				/* failed for good */
	HI_OUT_REQUEUE				/* not attempted (budget): back to the queue */
} HiOutcome;

/* One claimed outbox item; everything lives in its own memory context. */
typedef struct HiItem
{
	MemoryContext cxt;
	int64		outbox_id;
	HiItemKind	kind;
	int			integration_id;
	char	   *instance_url;
	char	   *tenant;
	char	   *client_id;
	char	   *client_secret;
	char	   *auth_url;		/* configured authorisation server, or NULL (discover) */
	char	   *scope;			/* configured OAuth scope, or NULL (the default) */
	char	   *sid;
	char	   *payload;		/* the ticket object (JSON) for creates */
	bool		maybe_sent;
	int			attempts;		/* including this one */
	int64		halo_ticket_id; /* for syncs */
	pg_uuid_t	claim_token;	/* this claim's token: the outcome is recorded with it */
	/* progress */
	HiStep		step;
	HiStep		resume_step;	/* the step to go on with after a token */
	bool		token_renewed;
	bool		token_fresh;	/* fetched its token just now: use it whatever the clock says */
	int			lookup_page;
	int			lookup_phase;	/* HI_LOOKUP_BY_TPID, then HI_LOOKUP_BY_SEARCH */
	char	   *lookup_search;	/* the search term: the sid, or the summary sent */
	int64	   *candidates;		/* ids of the current list page, to confirm */
	int			n_candidates;
	int			next_candidate;
	int			confirms;		/* GET /api/Tickets/{id} made by this lookup */
	bool		lookup_more;	/* the list has pages after the current one */
	struct HiInstance *inst;
	/* outcome */
	HiOutcome	outcome;
	int64		result_ticket_id;
	int			http_status;
	char	   *error;
	long		retry_in_ms;
	bool		outcome_maybe_sent;
	Jsonb	   *ticket_jb;		/* a sync's answers, parsed (json_util.c) */
	Jsonb	   *actions_jb;
	/* a note or close (followup.c) */
	char	   *action_body;	/* the array POSTed to /api/Actions */
	char	   *action_note;	/* its note, trimmed */
	int64		action_new_status;	/* a close's new status, else 0 */
	int64	   *known;			/* actions already posted on the ticket */
	int			n_known;
	struct HiItem *next;
} HiItem;

extern HiItem *hi_item_new(void);
extern void hi_item_free(HiItem *item);

extern void hi_engine_submit(HiItem *item);
extern void hi_engine_submit_all(HiItem *items);
extern HiOutcome hi_item_retry_or_dead(HiItem *item, bool retryable, long retry_after_ms);
extern bool hi_engine_wait(long timeout_ms);
extern void hi_engine_pump(void);
extern HiItem *hi_engine_pop_finished(void);
extern bool hi_engine_pop_finished_peek(void);
extern int	hi_engine_active(void);
extern int	hi_engine_claim_room(void);
extern void hi_engine_abort_all(void);

extern bool hi_followup_prepare(HiItem *item);
extern int64 hi_followup_find(HiItem *item, Jsonb *jb);

#endif							/* HI_ENGINE_H */
