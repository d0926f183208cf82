/*-------------------------------------------------------------------------
 * hi_json.h
 *	  Reading Halo's JSON answers with PostgreSQL's jsonb parser, without
 *	  raising errors (the worker runs these outside any transaction).
 *-------------------------------------------------------------------------
 */
#ifndef HI_JSON_H
#define HI_JSON_H

#include "utils/jsonb.h"

extern Jsonb *hi_json_parse(const char *text);
extern Jsonb *hi_json_parse_answer(char *body, size_t len, char **why);
extern bool hi_json_get_int64(JsonbContainer *obj, const char *key, int64 *out);
extern char *hi_json_get_text(JsonbContainer *obj, const char *key);
extern JsonbContainer *hi_json_get_container(JsonbContainer *obj, const char *key);
extern JsonbContainer *hi_json_first_object(Jsonb *jb);
extern int	hi_json_ticket_ids(Jsonb *jb, int64 *ids, int max_ids, int64 *record_count);
extern int	hi_json_ticket_is(Jsonb *jb, const char *third_party_id);
extern char *hi_json_authinfo(char *body, size_t len, char **tenant, char **why);

#endif							/* HI_JSON_H */
