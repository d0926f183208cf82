/*-------------------------------------------------------------------------
 * replwait.c
 *	  halo_itsm.wait_for_replication: nothing is sent to Halo before the
 *	  commit that made it due is flushed on the standbys.
 *
 *	  Under asynchronous streaming replication a primary can commit a case,
 *	  the worker can create its ticket, and the primary can then die before
 *	  the standby received the commit: the promoted standby knows nothing of
 *	  the case nor of the ticket, and the case inserted again gets a second
 *	  one. So, after the transaction that claims items (and marks them in
 *	  flight) commits and before their first request, the worker (and
 *	  deliver(), and the webhook listener before it answers 200) waits until
 *	  every physical standby that is streaming has flushed WAL up to that
 *	  commit, which comes after the commits of every item it claimed. A
 *	  promoted standby then has the case and knows the item was in flight,
 *	  and looks the ticket up before sending again. Reads the walsenders'
 *	  shared memory, as synchronous replication does; with no standby
 *	  streaming it costs nothing. A standby that stops answering is dropped
 *	  by its walsender after wal_sender_timeout, and the wait ends then.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "replication/walsender_private.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "halo_itsm.h"

/* a wait this long is said in the log (once per wait) */
#define REPLWAIT_LOG_US (10 * USECS_PER_SEC)

bool		hi_wait_for_replication = true;

static bool IsLogicalSender(pid_t pid);
static int	StandbysBehind(XLogRecPtr lsn, int *streaming);

/* True when the walsender pid serves a logical replication slot. */
static bool
IsLogicalSender(pid_t pid)
{
	bool		logical = false;
	int			i;

	if (ReplicationSlotCtl == NULL)
		return false;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (s->in_use && s->active_pid == pid && SlotIsLogical(s))
		{
			logical = true;
			break;
		}
	}
	LWLockRelease(ReplicationSlotControlLock);
	return logical;
}

/* How many streaming physical standbys have not flushed up to lsn; *streaming: how many stream. */
static int
StandbysBehind(XLogRecPtr lsn, int *streaming)
{
	int			behind = 0;
	int			i;

	*streaming = 0;
	if (WalSndCtl == NULL)
		return 0;
	for (i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *w = &WalSndCtl->walsnds[i];
		pid_t		pid;
		WalSndState state;
		XLogRecPtr	flush;

		SpinLockAcquire(&w->mutex);
		pid = w->pid;
		state = w->state;
		flush = w->flush;
		SpinLockRelease(&w->mutex);
		if (pid == 0 || state != WALSNDSTATE_STREAMING)
			continue;
		if (flush >= lsn)
		{
			(*streaming)++;
			continue;
		}
		if (IsLogicalSender(pid))
			continue;
		(*streaming)++;
		behind++;
	}
	return behind;
}

/*
 * Waits (when halo_itsm.wait_for_replication is on) until every streaming
 * physical standby has flushed WAL up to lsn (InvalidXLogRecPtr: this
 * backend's last commit); flushes it locally first. Returns the number of
 * standbys that were streaming. A latch set meanwhile is set again at the
 * end, for the caller's own wait.
 */
int
hi_replwait(XLogRecPtr lsn)
{
	TimestampTz start = 0;
	bool		logged = false;
	bool		latch_was_set = false;
	int			streaming = 0;

	if (!hi_wait_for_replication || max_wal_senders == 0)
		return 0;
	if (lsn == InvalidXLogRecPtr)
		lsn = XactLastCommitEnd;
	if (lsn == InvalidXLogRecPtr)
		return 0;
	/* a commit made with synchronous_commit = off: no standby can have it before this */
	XLogFlush(lsn);
	while (StandbysBehind(lsn, &streaming) > 0)
	{
		int			rc;

		if (start == 0)
			start = GetCurrentTimestamp();
		else if (!logged && GetCurrentTimestamp() - start >= REPLWAIT_LOG_US)
		{
			ereport(LOG,
					(errmsg("halo_itsm: waiting for %d streaming standby server(s) to flush %X/%X before sending to Halo",
							streaming, LSN_FORMAT_ARGS(lsn)),
					 errhint("halo_itsm.wait_for_replication is on. A standby that stopped answering is dropped after wal_sender_timeout; "
							 "see pg_stat_replication.")));
			logged = true;
		}
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_was_set = true;
		}
		CHECK_FOR_INTERRUPTS();
	}
	if (latch_was_set)
		SetLatch(MyLatch);
	return streaming;
}
