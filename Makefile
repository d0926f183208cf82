# Makefile: PGXS build of the halo_itsm extension.
#
#   make && make install     build and install into the PostgreSQL found by pg_config
#   make installcheck        pg_regress against a running server (see test/run_tests.sh)
#   make dist                the source archives halo_itsm-<version>.zip and .tar.gz

MODULE_big = halo_itsm
EXTENSION = halo_itsm
# The one version number: default_version in the control file. The install script's
# name, the C library's reported version (halo_itsm.version(), the HTTP User-Agent),
# META.json and debian/changelog follow it (test/release/check_release.sh checks them).
EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(EXTENSION).control)
# The install script is generated from sql/{common,outbound,inbound}/, one file per
# responsibility, concatenated in the order of their numbered names.
HI_INSTALL_SQL = sql/halo_itsm--$(EXTVERSION).sql
SQL_ROOMS = common outbound inbound
SQL_PARTS = $(foreach n,$(sort $(notdir $(wildcard $(SQL_ROOMS:%=sql/%/*.sql)))),$(wildcard $(SQL_ROOMS:%=sql/%/$(n))))
# Upgrades: sql/updates/A--B.sql holds what runs once on the way from A to B (ALTER TABLE,
# new tables and types, DROP of a function whose signature changed); the script
# PostgreSQL runs, sql/halo_itsm--A--B.sql, is that followed by every re-runnable part
# (the parts not named *.once.sql: CREATE OR REPLACE functions, views, triggers, grants).
SQL_REPEATABLE = $(filter-out %.once.sql,$(SQL_PARTS))
HI_UPDATE_SQL = $(patsubst sql/updates/%.sql,sql/halo_itsm--%.sql,$(wildcard sql/updates/*--$(EXTVERSION).sql))
DATA_built = $(HI_INSTALL_SQL) $(HI_UPDATE_SQL)

CORE_OBJS = src/core/hi_template.o src/core/hi_signature.o src/core/hi_backoff.o src/core/hi_html.o \
	src/core/hi_answer.o src/core/hi_budget.o src/core/hi_webhook_status.o src/core/hi_rate.o
PG_OBJS = $(patsubst %.c,%.o,$(wildcard src/common/*.c src/outbound/*.c src/inbound/*.c))
OBJS = $(CORE_OBJS) $(PG_OBJS)

PG_CPPFLAGS = -Isrc/include -Isrc/core $(shell curl-config --cflags) -DHI_EXTVERSION='"$(EXTVERSION)"'
PG_CFLAGS = -Werror -Wall
SHLIB_LINK = $(shell curl-config --libs) -lssl -lcrypto -lmicrohttpd

REGRESS = $(patsubst test/regress/sql/%.sql,%,$(sort $(wildcard test/regress/sql/*.sql)))
REGRESS_OPTS = --inputdir=test/regress --outputdir=test/regress/out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

EXTRA_CLEAN = test/regress/out

# every object depends on every header (PGXS tracks no header dependencies)
$(OBJS): $(wildcard src/include/*.h src/core/*.h)

$(HI_INSTALL_SQL): $(SQL_PARTS)
	cat $(SQL_PARTS) > $@

sql/halo_itsm--%--$(EXTVERSION).sql: sql/updates/%--$(EXTVERSION).sql $(SQL_REPEATABLE)
	cat $^ > $@

# The source archives PGXN (zip) and Debian (tar.gz) take: git archive of DIST_REF (default
# HEAD, i.e. what is committed), every file under halo_itsm-<version>/, written to DIST_DIR.
# test/release/check_dist.sh checks that the archive builds.
DIST_NAME = $(EXTENSION)-$(EXTVERSION)
DIST_REF ?= HEAD
DIST_DIR ?= .
.PHONY: dist
dist:
	git archive --format=zip --prefix=$(DIST_NAME)/ -o $(DIST_DIR)/$(DIST_NAME).zip $(DIST_REF)
	git archive --format=tar.gz --prefix=$(DIST_NAME)/ -o $(DIST_DIR)/$(DIST_NAME).tar.gz $(DIST_REF)
