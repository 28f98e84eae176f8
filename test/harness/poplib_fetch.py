#!/usr/bin/env python3
"""Fetch every message of a POP3 maildrop with Python's stdlib poplib (never deletes).

Usage: poplib_fetch.py HOST PORT USER MODE OUTDIR [--cafile F | --insecure]
                       [--auth auto|user|apop|plain|login|cram-md5] [--source IP]
                       [--no-octet-check] [--dele N,M,... [--end quit|kill]]
MODE: plain | stls | implicit-tls. The password comes from $POP_PASS.
auto = APOP when the greeting carries a <timestamp>, else USER/PASS.
Messages are written as OUTDIR/001.eml, ... with CRLF line ends (poplib undoes
dot-stuffing). Exit 0 only if every message arrived whole: a connection closed
inside a message, or a message whose size differs from the "+OK N octets" the
server announced, is an error (exit 1). Protocol notes go to stderr.
With --dele it fetches nothing: it deletes those messages, then QUITs, or with
--end kill sends itself SIGKILL, a client that dies with deletions pending.
"""
import argparse
import base64
import hashlib
import hmac
import os
import poplib
import re
import signal
import socket
import ssl
import sys


def note(msg):
    print(msg, file=sys.stderr, flush=True)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def connect(a, ctx):
    src = (a.source, 0) if a.source else None

    class Plain(poplib.POP3):
        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout, source_address=src)

    class Implicit(poplib.POP3_SSL):
        def _create_socket(self, timeout):
            sock = socket.create_connection((self.host, self.port), timeout, source_address=src)
            return self.context.wrap_socket(sock, server_hostname=self.host)

    if a.mode == "implicit-tls":
        return Implicit(a.host, a.port, timeout=a.timeout, context=ctx)
    return Plain(a.host, a.port, timeout=a.timeout)


def expect_continuation(p):
    line = p._getline()[0]
    note("S: " + line.decode("utf-8", "replace"))
    if not line.startswith(b"+ ") and line != b"+":
        raise poplib.error_proto(line)
    return line[2:]


def login(p, a, pw, greeting):
    auth = a.auth
    if auth == "auto":
        auth = "apop" if re.search(rb"<[^<>]*@[^<>]*>", greeting) else "user"
    user = a.user.encode("utf-8")
    if auth == "user":
        p.user(a.user)
        p.pass_(pw)
    elif auth == "apop":
        p.apop(a.user, pw)
    elif auth == "plain":
        p._shortcmd("AUTH PLAIN " + b64(b"\0" + user + b"\0" + pw.encode("utf-8")))
    elif auth == "login":
        p._putcmd("AUTH LOGIN")
        expect_continuation(p)
        p._putcmd(b64(user))
        expect_continuation(p)
        p._shortcmd(b64(pw.encode("utf-8")))
    elif auth == "cram-md5":
        p._putcmd("AUTH CRAM-MD5")
        challenge = base64.b64decode(expect_continuation(p))
        digest = hmac.new(pw.encode("utf-8"), challenge, hashlib.md5).hexdigest()
        p._shortcmd(b64(user + b" " + digest.encode("ascii")))
    else:
        raise SystemExit(f"unknown --auth {auth}")
    note(f"logged in with {auth}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("user")
    ap.add_argument("mode", choices=["plain", "stls", "implicit-tls"])
    ap.add_argument("outdir")
    ap.add_argument("--cafile")
    ap.add_argument("--insecure", action="store_true")
    ap.add_argument("--auth", default="auto")
    ap.add_argument("--source")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--no-octet-check", action="store_true")
    ap.add_argument("--dele")
    ap.add_argument("--end", choices=["quit", "kill"], default="quit")
    a = ap.parse_args()
    pw = os.environ["POP_PASS"]

    ctx = None
    if a.mode != "plain":
        if a.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=a.cafile)
    p = connect(a, ctx)
    greeting = p.getwelcome()
    note("greeting: " + greeting.decode("utf-8", "replace"))
    if a.mode == "stls":
        p.stls(context=ctx)
        note("stls: TLS established")
    login(p, a, pw, greeting)

    if a.dele:
        for n in a.dele.split(","):
            note(f"dele {n}: " + p.dele(int(n)).decode("utf-8", "replace"))
        if a.end == "kill":
            note("killing myself")
            os.kill(os.getpid(), signal.SIGKILL)
        p.quit()
        return

    count, size = p.stat()
    note(f"stat: {count} {size}")
    os.makedirs(a.outdir, exist_ok=True)
    for i in range(1, count + 1):
        resp, lines, _ = p.retr(i)  # poplib undoes the dot-stuffing; EOF inside raises error_proto
        data = b"".join(line + b"\r\n" for line in lines)
        m = re.match(rb"\+OK (\d+) octets", resp)
        if m and not a.no_octet_check and int(m.group(1)) != len(data):
            raise poplib.error_proto(f"message {i}: server announced {int(m.group(1))} octets, got {len(data)}")
        with open(os.path.join(a.outdir, f"{i:03d}.eml"), "wb") as f:
            f.write(data)
        note(f"retr {i}: {len(data)} octets")
    p.quit()


if __name__ == "__main__":
    try:
        main()
    except (poplib.error_proto, OSError, ssl.SSLError, ValueError, EOFError) as e:
        note(f"poplib_fetch: {type(e).__name__}: {e}")
        sys.exit(1)
