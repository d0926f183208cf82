/*-------------------------------------------------------------------------
 * halo_itsm.c
 *	  Entry point of the halo_itsm extension: _PG_init delegates to each
 *	  part (settings, shared memory, the launcher of the background worker,
 *	  the webhook listener), and halo_itsm.library_version(), the version
 *	  this library was built as.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "storage/ipc.h"

#include "halo_itsm.h"
#include "hi_listener.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(halo_itsm_library_version);

static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void ShmemRequestHook(void);

/* Chains our shared-memory request after any earlier hook. */
static void
ShmemRequestHook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	hi_shmem_request();
}

/* Module load: settings always; shared memory and the launcher only when preloaded. */
void
_PG_init(void)
{
	hi_guc_init();
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ShmemRequestHook;
	hi_shmem_init();
	hi_launcher_register();
	hi_listener_register();
}

/* The extension version this library was built as (EXTVERSION in the Makefile). */
Datum
halo_itsm_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(HI_EXTVERSION));
}
