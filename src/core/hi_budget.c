/*
 * hi_budget.c
 *		The counting of a request budget in a ring of buckets (see
 *		hi_budget.h): reset, take, used, idle.
 *
 * Plain C99 + libc, no PostgreSQL headers.
 */
#include "hi_budget.h"

#include <string.h>

static int64_t Width(int64_t window_us);
static void Advance(HiBudgetRing *r, int64_t bucket);
static int	Sum(const HiBudgetRing *r);

/* Microseconds per bucket: the window in HI_BUDGET_BUCKETS parts, rounded up. */
static int64_t
Width(int64_t window_us)
{
	if (window_us < HI_BUDGET_BUCKETS)
		return 1;
	return (window_us + HI_BUDGET_BUCKETS - 1) / HI_BUDGET_BUCKETS;
}

/* Moves the ring on to bucket, emptying the buckets that left the window. */
static void
Advance(HiBudgetRing *r, int64_t bucket)
{
	int64_t		b;

	if (bucket <= r->last_bucket)
		return;
	if (bucket - r->last_bucket >= HI_BUDGET_RING)
		memset(r->counts, 0, sizeof(r->counts));
	else
		for (b = r->last_bucket + 1; b <= bucket; b++)
			r->counts[b % HI_BUDGET_RING] = 0;
	r->last_bucket = bucket;
}

/* The requests counted in the ring. */
static int
Sum(const HiBudgetRing *r)
{
	int			i,
				sum = 0;

	for (i = 0; i < HI_BUDGET_RING; i++)
		sum += r->counts[i];
	return sum;
}

void
hi_budget_ring_reset(HiBudgetRing *r, int64_t window_us, int64_t now)
{
	memset(r, 0, sizeof(*r));
	r->window_us = window_us;
	r->last_bucket = now / Width(window_us);
}

int64_t
hi_budget_ring_take(HiBudgetRing *r, int budget, int64_t window_us, int64_t now, int take)
{
	int64_t		width,
				bucket,
				k;
	int			sum;

	if (r->window_us != window_us)
		hi_budget_ring_reset(r, window_us, now);
	width = Width(window_us);
	bucket = now / width;
	Advance(r, bucket);
	sum = Sum(r);
	if (sum < budget)
	{
		if (take)
		{
			r->counts[bucket % HI_BUDGET_RING]++;
			r->last_used = now;
		}
		return 0;
	}
	/* bucket k leaves the window when the current bucket is k + RING: oldest first */
	for (k = bucket - HI_BUDGET_BUCKETS; k <= bucket; k++)
	{
		if (k >= 0)				/* (before time 0 nothing was counted) */
			sum -= r->counts[k % HI_BUDGET_RING];
		if (sum < budget)
			return (k + HI_BUDGET_RING) * width - now;
	}
	return HI_BUDGET_RING * width;	/* budget <= 0: never; the caller turns it off */
}

int
hi_budget_ring_used(const HiBudgetRing *r, int64_t now)
{
	int64_t		bucket = now / Width(r->window_us);
	int64_t		b;
	int			used = 0;

	for (b = r->last_bucket - HI_BUDGET_BUCKETS; b <= r->last_bucket; b++)
		if (b >= bucket - HI_BUDGET_BUCKETS && b >= 0)
			used += r->counts[b % HI_BUDGET_RING];
	return used;
}

int
hi_budget_ring_idle(const HiBudgetRing *r, int64_t now)
{
	return r->last_used == 0 || now - r->last_used >= r->window_us + Width(r->window_us);
}
