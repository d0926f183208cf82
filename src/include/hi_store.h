/*-------------------------------------------------------------------------
 * hi_store.h
 *	  The delivery engine's side of the database: claiming outbox items and
 *	  recording outcomes, through the SQL functions of the install script.
 *	  Callers must be connected to SPI inside a transaction with a snapshot.
 *-------------------------------------------------------------------------
 */
#ifndef HI_STORE_H
#define HI_STORE_H

#include "hi_engine.h"

extern int	hi_store_claim(int max_items, HiItem **items);
extern void hi_store_record(HiItem *item);
extern int	hi_store_recover(bool include_self);
extern HiExtensionState hi_store_extension_ready(char **version);
extern bool hi_store_all_busy(HiItem *claimed);
extern ErrorData *hi_store_claim_subxact(bool recover, int room, HiItem **items, int *n, bool *all_busy);

#endif							/* HI_STORE_H */
