#!/usr/bin/env bash
# `npm run test:all` (and CI, via .ci/run): install the system packages the tests drive when they
# are missing, then npm ci (if needed), build, and run every test. With --install-only it stops
# after the installation.
#
# Real servers and clients the tests start themselves (never as system services):
#   dovecot-core dovecot-pop3d  backend POP3 server (test/harness/dovecot.ts)
#   redis-server redis-tools    rate-limit store, 3-node cluster (redis-cli --cluster create)
#   fail2ban                    fail2ban-regex proves contrib/fail2ban against real audit lines
#   fetchmail curl socat openssl python3   real POP3 clients and tools
#   prometheus                  promtool checks of dashboards/ rules
#   testssl.sh                  TLS policy scan of both listeners (test/e2e/tls-scan.test.ts)
#   haproxy                     load balancer sending PROXY v1/v2 headers (test/e2e/proxy-protocol.test.ts)
#   libjemalloc2                the allocator contrib/popwarden.service preloads (test/e2e/systemd-unit.test.ts)
#
# Legacy POP3 servers (test/harness/legacy.ts, test/e2e/legacy-backends.test.ts). They all
# `Provides: pop3-server` and conflict with dovecot-pop3d, so they are never installed: each one
# is `apt-get download`ed and unpacked with `dpkg -x` into $PEERS_DIR/<package> (default
# /opt/popwarden-peers, override with POPWARDEN_PEERS_DIR), skipped when already unpacked.
# The test runs each one inetd-style under socat, in a private mount namespace with its own
# /etc/passwd and /etc/shadow, so the host gets no accounts.
#   popa3d                      USER/PASS only, no CAPA (PAM, /var/mail mbox); needs the empty
#                               chroot dir /var/lib/popa3d, created here as its package would
#   mailutils-pop3d             GNU pop3d: APOP from its popauth database, optional STLS, CAPA
#   solid-pop3d                 APOP timestamp for every user, USER/PASS; strips "@domain" and
#                               "%domain" from user names (virtual hosting)
# Their runtime libraries are ordinary packages that conflict with nothing, installed with apt:
#   libmailutils9 libmu-dbm9 mailutils-common   mailutils-pop3d's own libraries and data
#   libkyotocabinet16v5 libgsasl18              libraries libmu-dbm9/libmailutils9 need
#   liblockfile1                                solid-pop3d's mbox locking
#   util-linux                                  unshare, setpriv (private mount namespace)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# systemd: systemd-socket-activate stands in for a socket unit (unix: backends) and
# systemd-analyze verifies the units in contrib/systemd; neither needs a running systemd.
PKGS=(dovecot-core dovecot-pop3d redis-server redis-tools fail2ban fetchmail curl socat openssl python3 prometheus ca-certificates procps testssl.sh haproxy systemd libjemalloc2)
LEGACY_SERVERS=(popa3d mailutils-pop3d solid-pop3d)
LEGACY_LIBS=(libmailutils9 libmu-dbm9 mailutils-common libkyotocabinet16v5 libgsasl18 liblockfile1 util-linux)
PKGS+=("${LEGACY_LIBS[@]}")
PEERS_DIR=${POPWARDEN_PEERS_DIR:-/opt/popwarden-peers}

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
    systemctl disable --now haproxy.service 2>/dev/null || true
  fi
fi

for bin in dovecot fetchmail curl socat openssl python3 redis-server redis-cli fail2ban-regex testssl; do
  command -v "$bin" >/dev/null 2>&1 || { echo "test-all: '$bin' not found after install" >&2; exit 1; }
done
[ -x /usr/lib/dovecot/pop3 ] || { echo "test-all: dovecot-pop3d is not installed" >&2; exit 1; }

# The legacy servers, unpacked side by side (see the header). A package counts as unpacked when
# its stamp file exists; the stamp is written last, so an interrupted run is redone.
unpack_legacy_server() { # PACKAGE
  local pkg=$1 dest="$PEERS_DIR/$1" debs="$PEERS_DIR/debs" deb
  [ -f "$dest/.unpacked" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "test-all: $pkg is not unpacked in $dest; run this script as root once" >&2
    exit 1
  fi
  mkdir -p "$debs"
  # apt's download sandbox user (_apt) cannot write into a root-owned directory: download as root.
  if ! (cd "$debs" && apt-get -q -o APT::Sandbox::User=root download "$pkg"); then
    apt-get update
    (cd "$debs" && apt-get -q -o APT::Sandbox::User=root download "$pkg")
  fi
  deb=$(ls -t "$debs/${pkg}_"*.deb | head -1)
  rm -rf "$dest"
  mkdir -p "$dest"
  dpkg -x "$deb" "$dest"
  basename "$deb" >"$dest/.unpacked"
  echo "test-all: unpacked $(basename "$deb") into $dest" >&2
}
for p in "${LEGACY_SERVERS[@]}"; do unpack_legacy_server "$p"; done
mkdir -p /var/lib/popa3d 2>/dev/null || true
for bin in "$PEERS_DIR/popa3d/usr/sbin/popa3d" "$PEERS_DIR/mailutils-pop3d/usr/sbin/pop3d" \
           "$PEERS_DIR/mailutils-pop3d/usr/bin/popauth" "$PEERS_DIR/solid-pop3d/usr/sbin/solid-pop3d"; do
  [ -x "$bin" ] || { echo "test-all: $bin missing after unpacking" >&2; exit 1; }
  if ldd "$bin" | grep -q 'not found'; then
    echo "test-all: $bin lacks libraries:" >&2
    ldd "$bin" | grep 'not found' >&2
    exit 1
  fi
done
if [ "${1:-}" = --install-only ]; then exit 0; fi

if [ ! -d node_modules ]; then
  npm ci
fi
npm run build
npm test
