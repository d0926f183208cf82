/*
 * hi_budget.h
 *		The counting of a request budget ("at most B requests within any
 *		window of W"), for halo_itsm's per-integration budget kept in shared
 *		memory (src/outbound/budget.c).
 *
 *		The window is cut into HI_BUDGET_BUCKETS buckets of W/HI_BUDGET_BUCKETS
 *		(rounded up); a ring keeps the counts of the HI_BUDGET_RING buckets a
 *		window ending in the current bucket can touch. A request is allowed
 *		when their sum is below B. The sum covers at least the last window,
 *		so no window of length W ever holds more than B requests; the price
 *		is a wait of at most one bucket longer than an exact sliding window.
 *
 * Plain C99 + libc, no PostgreSQL headers. Nothing here allocates. Times
 * are microseconds on any clock that does not go backwards (>= 0).
 */
#ifndef HI_BUDGET_H
#define HI_BUDGET_H

#include <stdint.h>

#define HI_BUDGET_BUCKETS 64
#define HI_BUDGET_RING (HI_BUDGET_BUCKETS + 1)

/* One budget's counts. */
typedef struct HiBudgetRing
{
	int64_t		window_us;		/* the window the buckets were cut for */
	int64_t		last_bucket;	/* absolute number of the newest bucket counted */
	int64_t		last_used;		/* the newest request counted (0: none) */
	int32_t		counts[HI_BUDGET_RING]; /* by absolute bucket number % RING */
} HiBudgetRing;

/* Empties the ring and cuts it for window_us (> 0) at time now. */
extern void hi_budget_ring_reset(HiBudgetRing *r, int64_t window_us, int64_t now);

/*
 * Microseconds until a request may be sent under budget (> 0); 0 when it
 * may be sent now, and then, with take, it is counted. A ring cut for
 * another window is emptied first (the window setting changed).
 */
extern int64_t hi_budget_ring_take(HiBudgetRing *r, int budget, int64_t window_us,
								   int64_t now, int take);

/* Requests counted in the buckets a window ending at now touches (read only). */
extern int	hi_budget_ring_used(const HiBudgetRing *r, int64_t now);

/* Whether nothing counted can still be in a window ending at now or later. */
extern int	hi_budget_ring_idle(const HiBudgetRing *r, int64_t now);

#endif							/* HI_BUDGET_H */
