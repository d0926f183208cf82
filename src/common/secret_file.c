/*-------------------------------------------------------------------------
 * secret_file.c
 *	  halo_itsm.secret_from_file(path): a client secret read from a file on
 *	  the database server, so that connect() and set_credentials() can be
 *	  given it without the secret ever being in a statement's text (which
 *	  pg_stat_activity shows to pg_monitor members, and psql keeps in its
 *	  history). Only roles that may read server files may call it, and the
 *	  file must be a regular file no other user of the machine can read.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_authid_d.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "halo_itsm.h"

PG_FUNCTION_INFO_V1(halo_itsm_secret_from_file);

/* Longest secret file accepted (Halo's client secrets are well under 200 bytes). */
#define HI_SECRET_FILE_MAX 4096

static void CheckSecretFile(const char *path, const struct stat *st);
static int	ReadSecret(int fd, const char *path, char *buf);

#define HINT_MODE "Make the file readable only by the database server's operating-system user, e.g. chown postgres and chmod 600 (or chmod 640 with a group the server belongs to)."

/* Refuses a file that is not a regular file or that other users could read or change. */
static void
CheckSecretFile(const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("halo_itsm: \"%s\" is not a regular file", path),
				 errhint("Pass the path of a file that holds only the client secret.")));
	if (st->st_mode & (S_IRWXO | S_IWGRP))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: the secret file \"%s\" is accessible to other users of the server (mode %04o)",
						path, (unsigned int) (st->st_mode & 07777)),
				 errhint(HINT_MODE)));
	if (st->st_size > HI_SECRET_FILE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: the secret file \"%s\" has %lld bytes, more than %d",
						path, (long long) st->st_size, HI_SECRET_FILE_MAX),
				 errhint("The file must hold only the client secret (one line).")));
}

/* Reads up to HI_SECRET_FILE_MAX bytes of an open file into buf; returns how many. */
static int
ReadSecret(int fd, const char *path, char *buf)
{
	int			len = 0;

	for (;;)
	{
		ssize_t		n = read(fd, buf + len, HI_SECRET_FILE_MAX + 1 - len);

		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("halo_itsm: could not read the secret file \"%s\": %m", path),
					 errhint("Check that the database server may read the file.")));
		if (n == 0)
			return len;
		len += (int) n;
		if (len > HI_SECRET_FILE_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("halo_itsm: the secret file \"%s\" has more than %d bytes", path, HI_SECRET_FILE_MAX),
					 errhint("The file must hold only the client secret (one line).")));
	}
}

/* SQL: the client secret held in a server file (trailing white space removed). */
Datum
halo_itsm_secret_from_file(PG_FUNCTION_ARGS)
{
	char	   *path;
	char		buf[HI_SECRET_FILE_MAX + 1];
	struct stat st;
	int			fd;
	int			len;
	text	   *result;

	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("halo_itsm: reading a secret file needs the privileges of pg_read_server_files"),
				 errhint("Call it as a superuser, or GRANT pg_read_server_files to the role that sets up integrations.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: the path of the secret file is required"),
				 errhint("Pass the absolute path of a file on the database server.")));
	path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: the path of the secret file must be absolute, not \"%s\"", path),
				 errhint("Pass the absolute path of a file on the database server, e.g. '/etc/halo_itsm/client_secret'.")));

	/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer, uncancellable; it is refused below */
	fd = OpenTransientFile(path, O_RDONLY | O_NONBLOCK | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("halo_itsm: could not open the secret file \"%s\": %m", path),
				 errhint("The file must exist on the database server and be readable by its operating-system user.")));
	/* checked on the open file, so that it cannot be swapped between check and read */
	if (fstat(fd, &st) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("halo_itsm: could not stat the secret file \"%s\": %m", path),
				 errhint("Check that the database server may read the file.")));
	CheckSecretFile(path, &st);
	len = ReadSecret(fd, path, buf);
	CloseTransientFile(fd);

	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	if (len == 0 || memchr(buf, '\0', len) != NULL || !pg_verifymbstr(buf, len, true))
	{
		explicit_bzero(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: the secret file \"%s\" holds no usable secret (empty, a NUL byte, or not valid in the database encoding)", path),
				 errhint("Write only the client secret from the API application in Halo into the file, as one line.")));
	}
	result = cstring_to_text_with_len(buf, len);
	explicit_bzero(buf, sizeof(buf));
	PG_RETURN_TEXT_P(result);
}
