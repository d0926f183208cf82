/*-------------------------------------------------------------------------
 * spi.c
 *	  SPI helpers for every file that runs SQL from C (store.c, webhook.c,
 *	  enqueue.c, worker.c, deliver.c, diagnose.c, listener_apply.c):
 *	  SPI_connect with its result checked, statements prepared once per
 *	  process and kept, and their execution, both with search_path pinned
 *	  (pinning.c) and with a clear error when SPI fails.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "halo_itsm.h"
#include "hi_spi.h"

/* Connects to SPI (with SPI_connect_ext's options); raises a clear error when it cannot. */
void
hi_spi_connect(int options)
{
	int			rc = SPI_connect_ext(options);

	if (rc != SPI_OK_CONNECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("halo_itsm: could not connect to SPI: %s", SPI_result_code_string(rc)),
				 errhint("The server log has the details.")));
}

/* Prepares a statement once per process, with search_path pinned, and keeps it (in *plan). */
SPIPlanPtr
hi_prepare(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		int			pin = hi_pin_begin();
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		hi_pin_end(pin);

		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("halo_itsm: could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result)),
					 errhint("Check that the halo_itsm extension is installed and up to date (ALTER EXTENSION halo_itsm UPDATE).")));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/*
 * Runs a kept plan with search_path pinned; raises "halo_itsm: <what>
 * failed" with the given hint when SPI fails. Returns SPI's result code.
 */
int
hi_execute(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
		   const char *what, const char *hint)
{
	int			pin = hi_pin_begin();
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	hi_pin_end(pin);

	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("halo_itsm: %s failed: %s", what, SPI_result_code_string(rc)),
				 errhint("%s", hint)));
	return rc;
}
