/*-------------------------------------------------------------------------
 * fast_mock.c
 *	  A fast mock of the few Halo endpoints that ticket delivery needs, for
 *	  the benchmarks (test/bench/run.sh). The Python test mock runs a thread
 *	  per connection and cannot sustain thousands of requests a second; this
 *	  one is a single-threaded epoll loop with HTTP/1.1 keep-alive, and its
 *	  per-request latency is a timer (a timerfd armed at the earliest due
 *	  answer), so a slow answer never holds a thread.
 *
 *	  Halo endpoints (no authentication check; any client is accepted):
 *	    POST /auth/token          a bearer token valid for an hour
 *	    POST /api/Tickets         creates a ticket with a new id; records the
 *	                              body's third_party_id_string, the receive time
 *	                              and the answer time (CLOCK_REALTIME, us)
 *	    GET  /api/Tickets?third_party_id_string=S   the lookup: that ticket, or none
 *	  Control endpoints (answered at once):
 *	    GET  /_bench/records      one line per created ticket:
 *	                              sid TAB received_us TAB answered_us TAB id
 *	    POST /_bench/reset        forgets the tickets (ids keep increasing)
 *	    POST /_bench/latency?us=N sets the latency of the Halo endpoints
 *	    GET  /_bench/stats        {"requests":N,"tickets":N,"connections":N}
 *
 *	  Usage: fast_mock --port P [--latency-ms N]
 *	  It prints "fast_mock listening on http://127.0.0.1:P" once ready and
 *	  exits on SIGTERM/SIGINT. It listens on 127.0.0.1 only.
 *
 *	  The body and query are searched for the one field delivery sets
 *	  (third_party_id_string); this is a benchmark stub, not a Halo
 *	  implementation (the JSON checks live in test/mock/).
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define MAX_REQUEST (1024 * 1024)
#define SID_MAX 96

/* One client connection. */
typedef struct Conn
{
	int			fd;
	unsigned	gen;			/* bumps when the fd is reused */
	char	   *in;
	size_t		in_len,
				in_cap;
	char	   *out;
	size_t		out_len,
				out_pos,
				out_cap;
	int			busy;			/* an answer is waiting for its timer */
	int			close_after;	/* Connection: close */
	int			want_out;		/* EPOLLOUT registered */
} Conn;

/* An answer due at a monotonic time. */
typedef struct Pending
{
	int64_t		due_ns;
	int			fd;
	unsigned	gen;
	long		record;			/* index into records, or -1 */
	char	   *resp;
	size_t		resp_len;
} Pending;

/* A created ticket. */
typedef struct Record
{
	char		sid[SID_MAX];
	int64_t		recv_us;
	int64_t		sent_us;
	long		id;
} Record;

static Conn **conns = NULL;
static int	conns_cap = 0;
static int	n_conns = 0;
static Pending *heap = NULL;
static int	heap_n = 0,
			heap_cap = 0;
static Record *records = NULL;
static long n_records = 0,
			records_cap = 0;
static long *table = NULL;		/* open addressing: sid -> record index + 1 */
static long table_cap = 0;
static long next_id = 1001;
static long n_requests = 0;
static int64_t latency_ns = 0;
static int	epfd,
			tfd,
			lfd;
static volatile sig_atomic_t stop = 0;

/* Exits with a message: memory ran out. */
static void
oom(void)
{
	fprintf(stderr, "fast_mock: out of memory\n");
	exit(1);
}

/* realloc that exits when memory runs out. */
static void *
xrealloc(void *p, size_t n)
{
	void	   *r = realloc(p, n);

	if (r == NULL)
		oom();
	return r;
}

/* Monotonic time in nanoseconds. */
static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wall-clock time in microseconds (the clock the harness uses too). */
static int64_t
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* FNV-1a hash of a string. */
static uint64_t
hash_str(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h;
}

/* The record index of a sid, or -1. */
static long
table_find(const char *sid)
{
	long		i;

	if (table_cap == 0)
		return -1;
	for (i = hash_str(sid) & (table_cap - 1); table[i]; i = (i + 1) & (table_cap - 1))
		if (strcmp(records[table[i] - 1].sid, sid) == 0)
			return table[i] - 1;
	return -1;
}

/* Adds record idx to the sid table (the first record of a sid wins lookups). */
static void
table_add(long idx)
{
	long		i;

	if ((n_records + 1) * 2 > table_cap)
	{
		long		old_cap = table_cap,
					j;
		long	   *old = table;

		table_cap = table_cap ? table_cap * 2 : 1024;
		table = calloc(table_cap, sizeof(long));
		if (table == NULL)
			oom();
		for (j = 0; j < old_cap; j++)
			if (old[j])
			{
				for (i = hash_str(records[old[j] - 1].sid) & (table_cap - 1); table[i]; i = (i + 1) & (table_cap - 1))
					;
				table[i] = old[j];
			}
		free(old);
	}
	if (table_find(records[idx].sid) >= 0)
		return;
	for (i = hash_str(records[idx].sid) & (table_cap - 1); table[i]; i = (i + 1) & (table_cap - 1))
		;
	table[i] = idx + 1;
}

/* Pushes an answer onto the timer heap. */
static void
heap_push(Pending p)
{
	int			i;

	if (heap_n == heap_cap)
	{
		heap_cap = heap_cap ? heap_cap * 2 : 256;
		heap = xrealloc(heap, sizeof(Pending) * heap_cap);
	}
	i = heap_n++;
	while (i > 0 && heap[(i - 1) / 2].due_ns > p.due_ns)
	{
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = p;
}

/* Removes the earliest answer from the timer heap. */
static Pending
heap_pop(void)
{
	Pending		top = heap[0],
				last = heap[--heap_n];
	int			i = 0;

	for (;;)
	{
		int			c = 2 * i + 1;

		if (c >= heap_n)
			break;
		if (c + 1 < heap_n && heap[c + 1].due_ns < heap[c].due_ns)
			c++;
		if (last.due_ns <= heap[c].due_ns)
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (heap_n > 0)
		heap[i] = last;
	return top;
}

/* Arms the timerfd for the earliest due answer (or disarms it). */
static void
arm_timer(void)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (heap_n > 0)
	{
		int64_t		due = heap[0].due_ns;

		if (due <= 0)
			due = 1;
		its.it_value.tv_sec = due / 1000000000;
		its.it_value.tv_nsec = due % 1000000000;
	}
	timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Closes a connection and forgets it. */
static void
conn_close(Conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in);
	free(c->out);
	conns[c->fd] = NULL;
	free(c);
	n_conns--;
}

/* Writes what is buffered; returns -1 when the connection died. */
static int
conn_flush(Conn *c)
{
	while (c->out_pos < c->out_len)
	{
		ssize_t		n = write(c->fd, c->out + c->out_pos, c->out_len - c->out_pos);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -1;
		}
		c->out_pos += n;
	}
	if (c->out_pos == c->out_len)
		c->out_pos = c->out_len = 0;
	if ((c->out_len > 0) != c->want_out)
	{
		struct epoll_event ev;

		c->want_out = c->out_len > 0;
		ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
		ev.data.fd = c->fd;
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	}
	return 0;
}

/* Appends bytes to a connection's output. */
static void
conn_append(Conn *c, const char *s, size_t n)
{
	if (c->out_len + n > c->out_cap)
	{
		while (c->out_len + n > c->out_cap)
			c->out_cap = c->out_cap ? c->out_cap * 2 : 4096;
		c->out = xrealloc(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
}

/* A complete HTTP response (malloc'd) with a JSON or text body. */
static char *
make_response(int status, const char *ctype, const char *body, size_t body_len, int close_conn, size_t *len)
{
	const char *reason = status == 200 ? "OK" : status == 201 ? "Created" : status == 404 ? "Not Found" : "Bad Request";
	char		head[256];
	int			hl = snprintf(head, sizeof(head),
							  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
							  status, reason, ctype, body_len, close_conn ? "Connection: close\r\n" : "");
	char	   *r = xrealloc(NULL, hl + body_len + 1);

	memcpy(r, head, hl);
	memcpy(r + hl, body, body_len);
	r[hl + body_len] = '\0';
	*len = hl + body_len;
	return r;
}

/* Copies the value of a query parameter, %-decoded, into out; 1 when present. */
static int
query_param(const char *query, const char *name, char *out, size_t outsz)
{
	size_t		nl = strlen(name);
	const char *p = query;

	while (p && *p)
	{
		if (strncmp(p, name, nl) == 0 && p[nl] == '=')
		{
			size_t		o = 0;

			p += nl + 1;
			while (*p && *p != '&' && o + 1 < outsz)
			{
				if (*p == '%' && isxdigit((unsigned char) p[1]) && isxdigit((unsigned char) p[2]))
				{
					char		hex[3] = {p[1], p[2], 0};

					out[o++] = (char) strtol(hex, NULL, 16);
					p += 3;
				}
				else
				{
					out[o++] = *p == '+' ? ' ' : *p;
					p++;
				}
			}
			out[o] = '\0';
			return 1;
		}
		p = strchr(p, '&');
		if (p)
			p++;
	}
	return 0;
}

/* Copies the string value of "third_party_id_string" in a JSON body into out. */
static void
body_sid(const char *body, size_t len, char *out, size_t outsz)
{
	static const char key[] = "\"third_party_id_string\"";
	const char *p = memmem(body, len, key, sizeof(key) - 1);
	const char *end = body + len;
	size_t		o = 0;

	out[0] = '\0';
	if (p == NULL)
		return;
	p += sizeof(key) - 1;
	while (p < end && (*p == ' ' || *p == ':' || *p == '\t'))
		p++;
	if (p >= end || *p != '"')
		return;
	for (p++; p < end && *p != '"' && o + 1 < outsz; p++)
	{
		if (*p == '\\' && p + 1 < end)
			p++;
		out[o++] = *p;
	}
	out[o] = '\0';
}

/* Handles one complete request; the answer goes out now or at its due time. */
static void
handle_request(Conn *c, const char *method, char *target, const char *body, size_t body_len)
{
	char	   *query = strchr(target, '?');
	char		buf[512];
	char	   *resp;
	size_t		resp_len;
	int			delayed = 0;
	long		rec = -1;

	if (query)
		*query++ = '\0';
	else
		query = "";
	n_requests++;

	if (strcmp(target, "/auth/token") == 0 && strcmp(method, "POST") == 0)
	{
		static const char tok[] = "{\"access_token\":\"bench-token\",\"token_type\":\"Bearer\",\"expires_in\":3600,\"scope\":\"all\"}";

		resp = make_response(200, "application/json", tok, sizeof(tok) - 1, c->close_after, &resp_len);
		delayed = 1;
	}
	else if (strcmp(target, "/api/Tickets") == 0 && strcmp(method, "POST") == 0)
	{
		Record	   *r;
		int			n;

		if (n_records == records_cap)
		{
			records_cap = records_cap ? records_cap * 2 : 4096;
			records = xrealloc(records, sizeof(Record) * records_cap);
		}
		r = &records[n_records];
		r->recv_us = real_us();
		r->sent_us = 0;
		r->id = next_id++;
		body_sid(body, body_len, r->sid, sizeof(r->sid));
		rec = n_records++;
		table_add(rec);
		n = snprintf(buf, sizeof(buf), "{\"id\":%ld,\"third_party_id_string\":\"%s\"}", r->id, r->sid);
		resp = make_response(201, "application/json", buf, n, c->close_after, &resp_len);
		delayed = 1;
	}
	else if (strcmp(target, "/api/Tickets") == 0 && strcmp(method, "GET") == 0)
	{
		char		sid[SID_MAX];
		long		i = -1;
		int			n;

		if (query_param(query, "third_party_id_string", sid, sizeof(sid)))
			i = table_find(sid);
		if (i >= 0)
			n = snprintf(buf, sizeof(buf),
						 "{\"record_count\":1,\"tickets\":[{\"id\":%ld,\"third_party_id_string\":\"%s\"}]}",
						 records[i].id, records[i].sid);
		else
			n = snprintf(buf, sizeof(buf), "{\"record_count\":0,\"tickets\":[]}");
		resp = make_response(200, "application/json", buf, n, c->close_after, &resp_len);
		delayed = 1;
	}
	else if (strcmp(target, "/_bench/records") == 0)
	{
		size_t		cap = 64 + (size_t) n_records * (SID_MAX + 64),
					len = 0;
		char	   *txt = xrealloc(NULL, cap);
		long		i;

		for (i = 0; i < n_records; i++)
			len += snprintf(txt + len, cap - len, "%s\t%lld\t%lld\t%ld\n", records[i].sid,
							(long long) records[i].recv_us, (long long) records[i].sent_us, records[i].id);
		resp = make_response(200, "text/plain", txt, len, c->close_after, &resp_len);
		free(txt);
	}
	else if (strcmp(target, "/_bench/reset") == 0 && strcmp(method, "POST") == 0)
	{
		int			i;

		n_records = 0;
		if (table)
			memset(table, 0, sizeof(long) * table_cap);
		/* answers still due must not write into forgotten records */
		for (i = 0; i < heap_n; i++)
			heap[i].record = -1;
		resp = make_response(200, "application/json", "{\"ok\":true}", 11, c->close_after, &resp_len);
	}
	else if (strcmp(target, "/_bench/latency") == 0 && strcmp(method, "POST") == 0)
	{
		char		v[32];
		int			n;

		if (query_param(query, "us", v, sizeof(v)))
			latency_ns = atoll(v) * 1000;
		n = snprintf(buf, sizeof(buf), "{\"latency_us\":%lld}", (long long) (latency_ns / 1000));
		resp = make_response(200, "application/json", buf, n, c->close_after, &resp_len);
	}
	else if (strcmp(target, "/_bench/stats") == 0)
	{
		int			n = snprintf(buf, sizeof(buf), "{\"requests\":%ld,\"tickets\":%ld,\"connections\":%d}",
								 n_requests, n_records, n_conns);

		resp = make_response(200, "application/json", buf, n, c->close_after, &resp_len);
	}
	else
		resp = make_response(404, "application/json", "{\"error\":\"not found\"}", 21, c->close_after, &resp_len);

	if (delayed && latency_ns > 0)
	{
		Pending		p;

		p.due_ns = mono_ns() + latency_ns;
		p.fd = c->fd;
		p.gen = c->gen;
		p.record = rec;
		p.resp = resp;
		p.resp_len = resp_len;
		c->busy = 1;
		heap_push(p);
		if (heap[0].due_ns == p.due_ns && heap[0].fd == p.fd)
			arm_timer();
		return;
	}
	if (rec >= 0)
		records[rec].sent_us = real_us();
	conn_append(c, resp, resp_len);
	free(resp);
}

/* Parses and handles the complete requests buffered on a connection; -1 to close it. */
static int
conn_process(Conn *c)
{
	while (!c->busy && c->in_len > 0)
	{
		char	   *hend = memmem(c->in, c->in_len, "\r\n\r\n", 4);
		char	   *line_end,
				   *sp1,
				   *sp2,
				   *h;
		size_t		head_len,
					clen = 0,
					total;
		char		method[16];

		if (hend == NULL)
			return c->in_len > 65536 ? -1 : 0;
		head_len = hend - c->in + 4;
		*hend = '\0';
		line_end = strstr(c->in, "\r\n");
		if (line_end)
			*line_end = '\0';
		sp1 = strchr(c->in, ' ');
		sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
		if (sp1 == NULL || sp2 == NULL || sp1 - c->in >= (long) sizeof(method))
			return -1;
		memcpy(method, c->in, sp1 - c->in);
		method[sp1 - c->in] = '\0';
		*sp2 = '\0';
		c->close_after = strncmp(sp2 + 1, "HTTP/1.0", 8) == 0;
		for (h = line_end ? line_end + 2 : hend; h < hend;)
		{
			char	   *e = strstr(h, "\r\n");

			if (e)
				*e = '\0';
			if (strncasecmp(h, "content-length:", 15) == 0)
				clen = strtoul(h + 15, NULL, 10);
			else if (strncasecmp(h, "connection:", 11) == 0)
			{
				char	   *v = h + 11;

				while (*v == ' ')
					v++;
				if (strncasecmp(v, "close", 5) == 0)
					c->close_after = 1;
				else if (strncasecmp(v, "keep-alive", 10) == 0)
					c->close_after = 0;
			}
			if (e == NULL)
				break;
			h = e + 2;
		}
		if (clen > MAX_REQUEST)
			return -1;
		total = head_len + clen;
		if (c->in_len < total)
		{
			/* the body is not all here yet: undo nothing, wait (headers are re-parsed) */
			*hend = '\r';
			if (line_end)
				*line_end = '\r';
			*sp2 = ' ';
			/* restore the header line terminators we cut */
			for (h = c->in; h < hend; h++)
				if (*h == '\0')
					*h = '\r';
			return 0;
		}
		handle_request(c, method, sp1 + 1, c->in + head_len, clen);
		memmove(c->in, c->in + total, c->in_len - total);
		c->in_len -= total;
	}
	return 0;
}

/* Reads what arrived on a connection and handles it; closes it on EOF or error. */
static void
conn_read(Conn *c)
{
	for (;;)
	{
		ssize_t		n;

		if (c->in_cap - c->in_len < 4096)
		{
			c->in_cap = c->in_cap ? c->in_cap * 2 : 8192;
			c->in = xrealloc(c->in, c->in_cap);
		}
		n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
		if (n == 0)
		{
			conn_close(c);
			return;
		}
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_close(c);
			return;
		}
		c->in_len += n;
	}
	if (conn_process(c) < 0 || conn_flush(c) < 0 || (c->close_after && !c->busy && c->out_len == 0))
		conn_close(c);
}

/* Sends every answer whose time has come. */
static void
fire_timers(void)
{
	uint64_t	expirations;
	int64_t		now = mono_ns();

	if (read(tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		perror("fast_mock: timerfd");
	while (heap_n > 0 && heap[0].due_ns <= now)
	{
		Pending		p = heap_pop();
		Conn	   *c = p.fd < conns_cap ? conns[p.fd] : NULL;

		if (c != NULL && c->gen == p.gen)
		{
			if (p.record >= 0)
				records[p.record].sent_us = real_us();
			conn_append(c, p.resp, p.resp_len);
			c->busy = 0;
			if (conn_process(c) < 0 || conn_flush(c) < 0 || (c->close_after && !c->busy && c->out_len == 0))
				conn_close(c);
		}
		free(p.resp);
		if (heap_n > 0 && heap[0].due_ns > now)
			now = mono_ns();
	}
	arm_timer();
}

/* Accepts every pending connection. */
static void
accept_all(void)
{
	static unsigned gen = 0;

	for (;;)
	{
		int			fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int			one = 1;
		struct epoll_event ev;
		Conn	   *c;

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (fd >= conns_cap)
		{
			int			old = conns_cap;

			conns_cap = fd * 2 + 16;
			conns = xrealloc(conns, sizeof(Conn *) * conns_cap);
			memset(conns + old, 0, sizeof(Conn *) * (conns_cap - old));
		}
		c = calloc(1, sizeof(Conn));
		if (c == NULL)
			oom();
		c->fd = fd;
		c->gen = ++gen;
		conns[fd] = c;
		n_conns++;
		ev.events = EPOLLIN;
		ev.data.fd = fd;
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
	}
}

/* SIGTERM/SIGINT: leave the loop. */
static void
on_signal(int sig)
{
	stop = 1;
}

/* Parses the arguments, listens and runs the event loop. */
int
main(int argc, char **argv)
{
	int			port = 0,
				i,
				one = 1;
	struct sockaddr_in addr;
	socklen_t	alen = sizeof(addr);
	struct epoll_event ev,
				events[MAX_EVENTS];

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--latency-ms") == 0 && i + 1 < argc)
			latency_ns = (int64_t) (atof(argv[++i]) * 1e6);
		else
		{
			fprintf(stderr, "usage: fast_mock --port P [--latency-ms N]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *) &addr, sizeof(addr)) < 0 || listen(lfd, 4096) < 0)
	{
		perror("fast_mock: bind/listen");
		return 1;
	}
	getsockname(lfd, (struct sockaddr *) &addr, &alen);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.fd = tfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	printf("fast_mock listening on http://127.0.0.1:%d\n", ntohs(addr.sin_port));
	fflush(stdout);

	while (!stop)
	{
		int			n = epoll_wait(epfd, events, MAX_EVENTS, -1);

		for (i = 0; i < n; i++)
		{
			int			fd = events[i].data.fd;
			Conn	   *c;

			if (fd == lfd)
				accept_all();
			else if (fd == tfd)
				fire_timers();
			else if ((c = fd < conns_cap ? conns[fd] : NULL) != NULL)
			{
				if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					conn_read(c);
				else if ((events[i].events & EPOLLOUT) && conn_flush(c) < 0)
					conn_close(c);
			}
		}
	}
	return 0;
}
