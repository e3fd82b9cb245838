"""TCP <-> unix socket forwarding, to reach a loopback API server from another network namespace.

A pod's network namespace cannot see the host's 127.0.0.1, but both see the same filesystem, so a
unix socket crosses: `serve_unix_to_tcp(SOCK, PORT)` runs in the test (host namespace) and
forwards each connection on SOCK to 127.0.0.1:PORT; `python bridge.py PORT SOCK` runs inside the
agent's namespace and listens on its own 127.0.0.1:PORT, forwarding to SOCK. TLS passes through
untouched, so the kubeconfig (https://127.0.0.1:PORT) and its certificate stay valid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from pathlib import Path


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _splice(a: socket.socket, b: socket.socket) -> None:
    threading.Thread(target=_pump, args=(a, b), daemon=True).start()
    threading.Thread(target=_pump, args=(b, a), daemon=True).start()


def _serve(listener: socket.socket, connect: object) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = connect()  # type: ignore[operator]
        except OSError:
            conn.close()
            continue
        _splice(conn, upstream)


def serve_unix_to_tcp(path: Path, port: int) -> socket.socket:
    """In the host namespace: SOCK -> 127.0.0.1:PORT. Close the returned socket to stop."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    threading.Thread(
        target=_serve,
        args=(listener, lambda: socket.create_connection(("127.0.0.1", port))),
        daemon=True,
    ).start()
    return listener


def _unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def _exit_with(parent: int) -> None:
    """End this process when PARENT (the agent that started it) is gone: backgrounded in the
    agent's namespace, the bridge would otherwise outlive the test and keep the namespace."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    print("ready", flush=True)
    _serve(listener, lambda: _unix(path))


if __name__ == "__main__":
    main()
