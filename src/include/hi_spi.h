/*-------------------------------------------------------------------------
 * hi_spi.h
 *	  SPI helpers shared by the files that run SQL from C (spi.c): a
 *	  checked connect, statements prepared once per process with
 *	  search_path pinned, and their checked execution.
 *-------------------------------------------------------------------------
 */
#ifndef HI_SPI_H
#define HI_SPI_H

#include "postgres.h"

#include "executor/spi.h"

extern void hi_spi_connect(int options);
extern SPIPlanPtr hi_prepare(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types);
extern int	hi_execute(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
					   const char *what, const char *hint);

#endif							/* HI_SPI_H */
