/*-------------------------------------------------------------------------
 * hi_rate.h
 *	  A per-source request rate limit in a fixed-size table (plain C): one
 *	  fixed window per client address, bounded memory whatever the traffic.
 *-------------------------------------------------------------------------
 */
#ifndef HI_RATE_H
#define HI_RATE_H

#include <stdint.h>

#define HI_RATE_SLOTS	256		/* client addresses tracked at once */
#define HI_RATE_ADDR_LEN 16		/* an IPv6 address; IPv4 uses the first 4 bytes */

/* One tracked client address and its current window. */
typedef struct HiRateSlot
{
	unsigned char addr[HI_RATE_ADDR_LEN];
	int			used;
	int64_t		window_start;	/* seconds */
	int			count;
} HiRateSlot;

/* The table (zero it to start). */
typedef struct HiRateTable
{
	HiRateSlot	slots[HI_RATE_SLOTS];
} HiRateTable;

/*
 * Counts one request of addr (addr_len bytes, at most HI_RATE_ADDR_LEN) at
 * now (seconds); returns 0 when it is within limit per window_s seconds,
 * else the seconds until the window ends (at least 1). limit <= 0: no limit.
 */
extern int	hi_rate_check(HiRateTable *t, const unsigned char *addr, int addr_len, int64_t now,
						  int limit, int window_s);

#endif							/* HI_RATE_H */
