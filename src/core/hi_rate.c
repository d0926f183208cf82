/*-------------------------------------------------------------------------
 * hi_rate.c
 *	  The webhook listener's per-source rate limit (plain C, unit-tested):
 *	  a fixed window per client address in a table of HI_RATE_SLOTS slots.
 *	  An address not in the table takes a free slot, else the slot whose
 *	  window started first: memory stays the table's size whatever the
 *	  number of sources (many sources can push one out early, which only
 *	  ever lets that source send more, never less).
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "hi_rate.h"

/* Counts one request of addr at now; 0 when allowed, else seconds to wait. */
int
hi_rate_check(HiRateTable *t, const unsigned char *addr, int addr_len, int64_t now, int limit,
			  int window_s)
{
	unsigned char key[HI_RATE_ADDR_LEN];
	HiRateSlot *slot = NULL;
	HiRateSlot *victim = NULL;
	int			i;

	if (limit <= 0)
		return 0;
	if (window_s < 1)
		window_s = 1;
	memset(key, 0, sizeof(key));
	if (addr_len > HI_RATE_ADDR_LEN)
		addr_len = HI_RATE_ADDR_LEN;
	if (addr_len > 0)
		memcpy(key, addr, (size_t) addr_len);
	for (i = 0; i < HI_RATE_SLOTS; i++)
	{
		HiRateSlot *s = &t->slots[i];

		if (s->used && memcmp(s->addr, key, sizeof(key)) == 0)
		{
			slot = s;
			break;
		}
		if (!s->used)
		{
			if (victim == NULL || victim->used)
				victim = s;		/* the first free slot */
		}
		else if (victim == NULL || (victim->used && s->window_start < victim->window_start))
			victim = s;			/* else the oldest window */
	}
	if (slot == NULL)
	{
		slot = victim;
		memcpy(slot->addr, key, sizeof(key));
		slot->used = 1;
		slot->window_start = now;
		slot->count = 0;
	}
	if (now >= slot->window_start + window_s || now < slot->window_start)
	{
		slot->window_start = now;
		slot->count = 0;
	}
	if (slot->count >= limit)
	{
		int64_t		wait = slot->window_start + window_s - now;

		return wait < 1 ? 1 : (int) wait;
	}
	slot->count++;
	return 0;
}
