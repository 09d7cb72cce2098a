#!/usr/bin/env bash
# Idempotent install for `make install`: system packages that are missing
# (PostgreSQL with PostGIS 3 and pgRouting, Mosquitto, osm2pgrouting and
# osmium for road imports, Chromium for the browser tests), the Python
# virtualenv, and the console's npm packages.
# Each step is skipped when what it installs is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
need=()

pg_major() {
    # The newest installed server's major version, if any.
    ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1
}

command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -n "$(pg_major)" ] && [ -x "/usr/lib/postgresql/$(pg_major)/bin/initdb" ] || need+=(postgresql)
# `emergency import roads`: OpenStreetMap to a routable graph (.pbf read via osmium).
command -v osm2pgrouting >/dev/null 2>&1 || need+=(osm2pgrouting)
command -v osmium >/dev/null 2>&1 || need+=(osmium-tool)
if [ "${EMERGENCY_SKIP_BROWSER:-}" != "1" ]; then
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi

apt_install() {
    if [ "$(id -u)" != "0" ]; then
        echo "missing system packages: $*; install them as root (apt-get install $*)" >&2
        exit 1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -q
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [ ${#need[@]} -gt 0 ]; then
    apt_install "${need[@]}"
fi

# The extensions must match the server's major version.
major=$(pg_major)
ext=()
[ -f "/usr/share/postgresql/$major/extension/postgis.control" ] || ext+=("postgresql-$major-postgis-3")
[ -f "/usr/share/postgresql/$major/extension/pgrouting.control" ] || ext+=("postgresql-$major-pgrouting")
if [ ${#ext[@]} -gt 0 ]; then
    apt_install "${ext[@]}"
fi

# Debian's python3 makes a virtualenv only with python3-venv (ensurepip);
# a Python built from source (pyenv, the official images) has it already.
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_install python3-venv
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ setup.cfg -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch .venv/.installed
fi

if [ ! -d frontend/node_modules/leaflet ] || [ frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "install: done"
