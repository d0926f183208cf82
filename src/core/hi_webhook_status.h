/*-------------------------------------------------------------------------
 * hi_webhook_status.h
 *	  The HTTP status a webhook receiver answers for an ingest_webhook()
 *	  outcome: the one definition of the SQLSTATE-to-HTTP map (plain C).
 *-------------------------------------------------------------------------
 */
#ifndef HI_WEBHOOK_STATUS_H
#define HI_WEBHOOK_STATUS_H

/* The HTTP status for a SQLSTATE (NULL or "": accepted, 200; unknown: 500). */
extern int	hi_webhook_http_status(const char *sqlstate);

#endif							/* HI_WEBHOOK_STATUS_H */
