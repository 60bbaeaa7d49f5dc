#!/usr/bin/env bash
# Makes sure PostgreSQL's server programs (initdb, pg_ctl) are on this
# machine, so that the tests can start a throwaway cluster when no server
# answers (see internal/pgtest). When they are missing and we are root, it
# installs Debian's postgresql quietly; otherwise it says loudly that the
# PostgreSQL tests may be skipped. It does so with DATABASE_URL set too: when
# that server does not answer, the tests fall back to 127.0.0.1:5432 and then
# to a throwaway cluster, which needs the programs.
set -euo pipefail

have_programs() {
  { command -v initdb && command -v pg_ctl; } >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if have_programs; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: installing Debian's postgresql for the tests"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null 2>&1 &&
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 &&
    have_programs; then
    exit 0
  fi
  echo "ensure-postgres: installing postgresql failed" >&2
fi
cat >&2 <<'MSG'
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!! No PostgreSQL programs (initdb, pg_ctl) and no way to install them here.
!!! The PostgreSQL tests will run only if a server answers on 127.0.0.1:5432
!!! or DATABASE_URL names one; otherwise they are SKIPPED.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
MSG
