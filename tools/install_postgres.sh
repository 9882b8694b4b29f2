#!/bin/sh
# Install the Debian PostgreSQL server for the hub database tests (tests/hub/test_hub_db.py starts its own
# throwaway server from these binaries, on a free loopback port). Idempotent, and never fails the
# build: without root or apt-get it says why, and the PostgreSQL tests skip with that reason (or run
# against $EDGERET_TEST_POSTGRES_URL when it is set).
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "install_postgres: PostgreSQL is installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_postgres: not installing PostgreSQL (needs root and apt-get); its tests will skip"
    exit 0
fi
echo "install_postgres: installing postgresql with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q postgresql >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1; } \
    || echo "install_postgres: apt-get could not install postgresql; its tests will skip"
exit 0
