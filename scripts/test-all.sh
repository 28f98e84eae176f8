#!/usr/bin/env bash
# `npm run test:all` (and CI, via .ci/run): install the system packages the tests drive when they
# are missing, then npm ci (if needed), build, and run every test.
#
# Real servers and clients the tests start themselves (never as system services):
#   dovecot-core dovecot-pop3d  backend POP3 server (test/harness/dovecot.ts)
#   redis-server redis-tools    rate-limit store, 3-node cluster (redis-cli --cluster create)
#   fail2ban                    fail2ban-regex proves contrib/fail2ban against real audit lines
#   fetchmail curl socat openssl python3   real POP3 clients and tools
#   prometheus                  promtool checks of dashboards/ rules
#   testssl.sh                  TLS policy scan of both listeners (test/e2e/tls-scan.test.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

PKGS=(dovecot-core dovecot-pop3d redis-server redis-tools fail2ban fetchmail curl socat openssl python3 prometheus ca-certificates procps testssl.sh)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${PKGS[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-all: missing Debian packages: ${missing[*]}" >&2
    echo "test-all: install them as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "test-all: installing ${missing[*]}" >&2
  # Keep the packages from starting their system daemons (Dovecot on 110/995, Redis, Prometheus):
  # tests start their own instances on free ports. policy-rc.d is honoured by invoke-rc.d and
  # deb-systemd-invoke; remove it afterwards only if we created it.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  trap 'if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; own_policy=0; fi
  # As peers/install.sh does: on a systemd machine, the system Dovecot is never used.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now dovecot.service 2>/dev/null || true
    systemctl disable --now fail2ban.service 2>/dev/null || true
  fi
fi

for bin in dovecot fetchmail curl socat openssl python3 redis-server redis-cli fail2ban-regex testssl; do
  command -v "$bin" >/dev/null 2>&1 || { echo "test-all: '$bin' not found after install" >&2; exit 1; }
done
[ -x /usr/lib/dovecot/pop3 ] || { echo "test-all: dovecot-pop3d is not installed" >&2; exit 1; }

if [ ! -d node_modules ]; then
  npm ci
fi
npm run build
npm test
