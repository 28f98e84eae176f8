#!/usr/bin/env python3
"""Holds idle, logged-in POP3 sessions over implicit TLS 1.3 for bench/run.ts (workload d).

A process of its own, so that thousands of sessions cost the load generator little and leave the
measuring process alone: plain blocking sockets, a few threads to open them, nothing read once a
session is logged in.

    idle-sessions.py PORT CAFILE USER PASS
    stdin:  "hold N"  opens sessions until N are held (or failed), answers "held H failed F"
            EOF       closes every session and exits
"""
import resource
import socket
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor

OPENERS = 8
MAX_LINE = 4096

port, cafile, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
context = ssl.create_default_context(cafile=cafile)
context.minimum_version = ssl.TLSVersion.TLSv1_3


def reply(sock):
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(MAX_LINE)
        if not chunk or len(line) > MAX_LINE:
            raise ConnectionError("closed before a reply")
        line += chunk
    if not line.startswith(b"+OK"):
        raise ConnectionError(line.decode("latin1").strip())


def open_session():
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost")
    try:
        reply(sock)
        for command in (f"USER {user}", f"PASS {password}"):
            sock.sendall(f"{command}\r\n".encode())
            reply(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def main():
    held, failed = [], 0
    first_error = None
    with ThreadPoolExecutor(OPENERS) as pool:
        for line in sys.stdin:
            want = int(line.split()[1])
            for future in [pool.submit(open_session) for _ in range(max(0, want - len(held)))]:
                try:
                    held.append(future.result())
                except Exception as error:  # counted and reported, the run goes on
                    failed += 1
                    first_error = first_error or error
            if first_error is not None:
                print(f"idle-sessions: {failed} failed, first: {first_error!r}", file=sys.stderr)
            print(f"held {len(held)} failed {failed}", flush=True)
    for sock in held:
        sock.close()


main()
