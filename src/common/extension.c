/*-------------------------------------------------------------------------
 * extension.c
 *	  What pg_extension says of halo_itsm in the current database: whether it
 *	  is installed, its owner and the version of its SQL objects, compared
 *	  with the version of this library (HI_EXTVERSION, from the control
 *	  file). After a new library is installed and the server restarted, the
 *	  SQL stays at the old version until ALTER EXTENSION halo_itsm UPDATE;
 *	  the delivery worker and deliver() wait for it (worker.c, deliver.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "halo_itsm.h"

/*
 * Looks halo_itsm up in pg_extension: returns HI_EXT_MISSING, or
 * HI_EXT_OTHER_VERSION / HI_EXT_READY with *owner and *version (palloc'd)
 * set when the pointers are not NULL. Needs a transaction.
 */
HiExtensionState
hi_extension_lookup(Oid *owner, char **version)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	HiExtensionState state = HI_EXT_MISSING;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("halo_itsm"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		char	   *installed = isnull ? pstrdup("") : TextDatumGetCString(d);

		state = strcmp(installed, HI_EXTVERSION) == 0 ? HI_EXT_READY : HI_EXT_OTHER_VERSION;
		if (owner)
			*owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
		if (version)
			*version = installed;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return state;
}

/*
 * Raises 55000 with what to do unless halo_itsm is installed here at this
 * library's version; what names the caller (e.g. "deliver()").
 */
void
hi_extension_require_current(const char *what)
{
	char	   *version = NULL;
	HiExtensionState state = hi_extension_lookup(NULL, &version);

	if (state == HI_EXT_MISSING)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("halo_itsm: the extension is not installed in this database"),
				 errhint("Run CREATE EXTENSION halo_itsm first.")));
	if (state == HI_EXT_OTHER_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("halo_itsm: %s cannot run: the extension in this database is at version %s and the loaded library at %s",
						what, version, HI_EXTVERSION),
				 errhint("Run ALTER EXTENSION halo_itsm UPDATE in this database (queued items wait and are delivered after it).")));
}
