#!/usr/bin/env python3
"""Prints 1 or 0: whether TCP_NODELAY is set on the TCP socket that process PID holds between
127.0.0.1:LOCAL_PORT and the peer port PEER_PORT. Node has no getter for the option, so the
socket is borrowed with pidfd_getfd(2) (Linux >= 5.6, needs ptrace rights over PID) and read
with getsockopt(2): the kernel's own answer, not what the code meant to set.

usage: tcp_nodelay.py PID LOCAL_PORT PEER_PORT
"""
import ctypes
import os
import socket
import sys

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438


def socket_inode(pid: int, local_port: int, peer_port: int) -> str:
    for table in ('tcp', 'tcp6'):
        with open(f'/proc/{pid}/net/{table}') as f:
            next(f)
            for row in f:
                fields = row.split()
                local, peer, inode = fields[1], fields[2], fields[9]
                if int(local.split(':')[1], 16) == local_port and int(peer.split(':')[1], 16) == peer_port:
                    return inode
    sys.exit(f'no socket {local_port}<->{peer_port} in process {pid}')


def descriptor_of(pid: int, inode: str) -> int:
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            if os.readlink(f'/proc/{pid}/fd/{fd}') == f'socket:[{inode}]':
                return int(fd)
        except OSError:
            continue
    sys.exit(f'socket inode {inode} has no descriptor in process {pid}')


def main() -> None:
    pid, local_port, peer_port = (int(a) for a in sys.argv[1:4])
    fd = descriptor_of(pid, socket_inode(pid, local_port, peer_port))
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        sys.exit(f'pidfd_open: {os.strerror(ctypes.get_errno())}')
    borrowed = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    if borrowed < 0:
        sys.exit(f'pidfd_getfd: {os.strerror(ctypes.get_errno())}')
    sock = socket.socket(fileno=borrowed)
    try:
        print(1 if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) else 0)
    finally:
        sock.detach()
        os.close(borrowed)
        os.close(pidfd)


main()
