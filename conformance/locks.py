"""Host-wide locks between the kit's processes (``tox p`` runs several at
once): an abstract Unix socket bound under the lock's name.  Only one
process can hold the name; the kernel frees it when that process exits,
however it exits, and nothing is left on disk."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from conformance.errors import KitError

POLL_S = 0.5


@contextmanager
def host_lock(name: str, timeout: float, what: str) -> Iterator[None]:
    """Hold the lock ``name`` for the block; wait for it at most ``timeout`` seconds."""
    address = "\0bgw-conformance/" + hashlib.sha256(name.encode()).hexdigest()[:32]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.bind(address)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise KitError(
                        f"waited {timeout:g}s for another bgw-conformance process {what}; is one stuck?"
                    ) from None
                time.sleep(POLL_S)
        yield
    finally:
        sock.close()
