/*-------------------------------------------------------------------------
 * followup.c
 *	  The notes and closes the engine posts to an existing ticket as Halo
 *	  actions (POST /api/Actions): their claimed payload read into the item
 *	  (the action object to post, its note, its new status, and the ids of
 *	  the actions this extension has already posted on the ticket), and the
 *	  lookup after an ambiguous failure: among the ticket's actions, one
 *	  that an earlier attempt posted (same note, same new status, posted by
 *	  this integration's API application, not one already known). Halo has
 *	  no idempotency key, so this is what keeps a note from arriving twice.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "hi_engine.h"
#include "hi_json.h"

static char *Trimmed(const char *s);
static bool IsOurAction(HiItem *item, JsonbContainer *a, int64 *id);

/* A copy of s without leading and trailing blanks (NULL stays NULL). */
static char *
Trimmed(const char *s)
{
	const char *end;

	if (s == NULL)
		return NULL;
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	return pnstrdup(s, end - s);
}

/* Reads a note's or close's payload into the item (in its context); false when it is unusable. */
bool
hi_followup_prepare(HiItem *item)
{
	MemoryContext old = MemoryContextSwitchTo(item->cxt);
	Jsonb	   *jb = item->payload ? hi_json_parse(item->payload) : NULL;
	JsonbContainer *action = jb ? hi_json_get_container(&jb->root, "action") : NULL;
	JsonbContainer *known = jb ? hi_json_get_container(&jb->root, "known") : NULL;
	int			i;

	if (action == NULL || !JsonContainerIsObject(action) || known == NULL || !JsonContainerIsArray(known))
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	item->action_body = psprintf("[%s]", JsonbToCString(NULL, action, 256));
	item->action_note = Trimmed(hi_json_get_text(action, "note"));
	if (!hi_json_get_int64(action, "new_status", &item->action_new_status))
		item->action_new_status = 0;
	item->n_known = JsonContainerSize(known);
	item->known = palloc0(sizeof(int64) * Max(item->n_known, 1));
	for (i = 0; i < item->n_known; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(known, i);

		if (v == NULL || v->type != jbvNumeric)
			continue;
		item->known[i] = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
	}
	MemoryContextSwitchTo(old);
	return true;
}

/* True when the action (an object of a GET /api/Actions answer) is the one this item posted. */
static bool
IsOurAction(HiItem *item, JsonbContainer *a, int64 *id)
{
	int64		n;
	char	   *app;
	int			i;

	if (!hi_json_get_int64(a, "id", id) || *id <= 0)
		return false;
	for (i = 0; i < item->n_known; i++)
		if (item->known[i] == *id)
			return false;
	if (hi_json_get_int64(a, "ticket_id", &n) && n != item->halo_ticket_id)
		return false;
	if (item->action_new_status != 0 &&
		(!hi_json_get_int64(a, "new_status", &n) || n != item->action_new_status))
		return false;
	app = hi_json_get_text(a, "actionby_application_id");
	if (app != NULL && item->client_id != NULL && pg_strcasecmp(Trimmed(app), item->client_id) != 0)
		return false;
	{
		char	   *note = Trimmed(hi_json_get_text(a, "note"));

		return note != NULL && item->action_note != NULL && strcmp(note, item->action_note) == 0;
	}
}

/*
 * The id of the action an earlier attempt of this item posted, in a GET
 * /api/Actions answer ({"actions": [...]} or a bare array): > 0 when
 * found, 0 when none is (post it), -1 when the answer is not a list.
 */
int64
hi_followup_find(HiItem *item, Jsonb *jb)
{
	JsonbContainer *list;
	int			n,
				i;

	if (jb == NULL)
		return -1;
	list = JsonContainerIsArray(&jb->root) && !JsonContainerIsScalar(&jb->root) ? &jb->root :
		JsonContainerIsObject(&jb->root) ? hi_json_get_container(&jb->root, "actions") : NULL;
	if (list == NULL || !JsonContainerIsArray(list))
		return -1;
	n = JsonContainerSize(list);
	for (i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(list, i);
		int64		id;

		if (v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data) &&
			IsOurAction(item, v->val.binary.data, &id))
			return id;
	}
	return 0;
}
