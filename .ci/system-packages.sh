#!/bin/sh
# Install (as root) or check (as anyone else) the Debian 12 packages that building,
# testing and packaging MultiFlexi need. Quick when everything is already there.
set -eu

PACKAGES="
  python3 python3-venv python3-dev gcc pkg-config libsystemd-dev
  make git util-linux procps
  postgresql
  podman runc uidmap fuse-overlayfs slirp4netns catatonit busybox-static
  docker.io
  systemd tmux sudo
  debhelper dpkg-dev build-essential lintian fakeroot adduser
  mmdebstrap systemd-container openssh-client
  python3-pip
  prometheus
  zabbix-agent zabbix-server-pgsql zabbix-frontend-php
  php8.2-cli php8.2-cgi php8.2-pgsql php8.2-bcmath php8.2-gd php8.2-mbstring php8.2-xml
"
# sudo: the audit test runs `sudo multiflexi-cli` as a test user (tests/e2e/test_access.py).
# prometheus, zabbix-*: the monitoring tests run Debian's Prometheus server, Zabbix agent,
# Zabbix server (on the tests' own PostgreSQL) and the Zabbix frontend's API (under PHP's
# built-in web server; php8.2-cgi is listed so that the php metapackage does not pull
# in Apache). Should installing start Debian's own prometheus or zabbix services (a host
# without policy-rc.d), the tests do not mind: they run their own on ports of their own.

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages:$missing" >&2
  echo "Install them with: sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "Installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
