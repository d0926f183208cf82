/*-------------------------------------------------------------------------
 * pinning.c
 *	  The settings that give SQL text its meaning, pinned wherever the
 *	  extension runs SQL from C, so that no per-database, per-role or
 *	  session setting can redirect it: search_path (pg_catalog first, then
 *	  pg_temp; the extension's own objects are always schema-qualified)
 *	  and, for the worker's whole session, the settings that change how
 *	  literals and dates in the extension's SQL functions are read.
 *
 *	  Kept SPI plans are re-analysed with the search_path current at their
 *	  execution when it differs from the one they were analysed with, so
 *	  pinning at prepare time alone is not enough: every statement is also
 *	  fully qualified (names, types and OPERATOR(pg_catalog.x)), and the
 *	  store's statements are pinned around each execution as well.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/guc.h"

#include "halo_itsm.h"

/* The search_path of every statement the extension runs from C. */
#define HI_PINNED_SEARCH_PATH "pg_catalog, pg_temp"

/* What the worker's session pins for its whole life, over ALTER DATABASE/ROLE ... SET. */
static const struct
{
	const char *name;
	const char *value;
}			hi_worker_pinned[] = {
	{"search_path", HI_PINNED_SEARCH_PATH},
	{"standard_conforming_strings", "on"},
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"transform_null_equals", "off"},
	{"array_nulls", "on"},
	{"backslash_quote", "safe_encoding"},
	/* a database owner's defaults must not stop the worker's writes or fail them */
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	/*
	 * Its statements are short. The claim's planner settings (enable_seqscan
	 * off) lift their estimated costs over jit_above_cost, and a cached plan
	 * with JIT compiles again at every execution: 70 % of the worker's CPU
	 * at 200 integrations.
	 */
	{"jit", "off"},
};

/* Pins the worker's settings for the rest of its session (call right after connecting). */
void
hi_pin_worker_session(void)
{
	int			i;

	for (i = 0; i < lengthof(hi_worker_pinned); i++)
		SetConfigOption(hi_worker_pinned[i].name, hi_worker_pinned[i].value,
						PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Sets search_path to the pinned one until hi_pin_end(returned level); an
 * error in between restores it with the (sub)transaction. When it is the
 * pinned one already (the worker's session, a function whose SET clause
 * pins it, such as ingest_webhook()), nothing is set: -1 is returned.
 */
int
hi_pin_begin(void)
{
	int			level;

	if (namespace_search_path != NULL && strcmp(namespace_search_path, HI_PINNED_SEARCH_PATH) == 0)
		return -1;
	level = NewGUCNestLevel();
	(void) set_config_option("search_path", HI_PINNED_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Restores the search_path that hi_pin_begin() replaced (if it replaced it). */
void
hi_pin_end(int level)
{
	if (level >= 0)
		AtEOXact_GUC(true, level);
}
