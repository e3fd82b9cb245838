#!/usr/bin/env python3
"""Forward TCP from this machine's loopback into a network namespace (standard library only).

    forward.py --netns /proc/PID/ns/net --target 127.0.0.1:6443 --port-file FILE

Binds 127.0.0.1 on a free port in the namespace it starts in (the machine's), writes the port to
FILE, then joins the target network namespace: sockets keep the namespace they were made in, so
the listener stays on the machine's loopback while every connection it opens goes to TARGET inside
the node's namespace. The test node's API server thus needs no address, route or NAT outside its
namespace. Exits when its parent dies (the harness that started it) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import threading
from pathlib import Path

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_BUFFER = 65536


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(_BUFFER)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def _serve(client: socket.socket, host: str, port: int) -> None:
    try:
        upstream = socket.create_connection((host, port), timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--netns", required=True, type=Path)
    parser.add_argument("--target", required=True, help="HOST:PORT inside the namespace")
    parser.add_argument("--port-file", required=True, type=Path)
    parser.add_argument("--die-with-parent", action="store_true")
    args = parser.parse_args()
    host, _, port_text = args.target.rpartition(":")
    libc = ctypes.CDLL(None, use_errno=True)
    if args.die_with_parent:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    fd = os.open(args.netns, os.O_RDONLY)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise SystemExit(f"forward.py: setns({args.netns}): {os.strerror(err)}")
    os.close(fd)
    tmp = args.port_file.with_name(args.port_file.name + ".tmp")
    tmp.write_text(f"{listener.getsockname()[1]}\n")
    tmp.replace(args.port_file)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve, args=(client, host, int(port_text)), daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main())
