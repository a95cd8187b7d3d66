#!/usr/bin/env bash
# Install the database servers the testkit's data plane runs behind the emulated RDS
# (tests/testkit/src/fault_proxy/databases.rs): MariaDB 10.11 for `mysql` and
# `mariadb` DB instances (`mariadbd`, `mariadb-install-db`, `mariadb`). PostgreSQL 15
# for `postgres` ones is a prerequisite (README), only checked here.
#
# Usage: scripts/setup-data-plane.sh
#
# Idempotent: installs nothing when the programs are there. As root it installs
# Debian's `mariadb-server-core` and `mariadb-client-core` with apt-get; as any other
# user it fails, saying what to run.
set -euo pipefail

found() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 ]]; }

missing=()
for program in mariadbd mariadb-install-db mariadb; do
  found "$program" || missing+=("$program")
done
if ((${#missing[@]})); then
  packages="mariadb-server-core mariadb-client-core"
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing $packages (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  else
    echo "MariaDB's ${missing[*]} missing: the data plane runs a MariaDB server for each mysql/mariadb DB instance. Install it as root: apt-get install $packages" >&2
    exit 1
  fi
fi

for program in initdb postgres psql; do
  command -v "$program" >/dev/null || {
    echo "PostgreSQL 15's $program is needed on PATH for the data plane (Debian: apt-get install postgresql-15, then add /usr/lib/postgresql/15/bin to PATH)" >&2
    exit 1
  }
done
