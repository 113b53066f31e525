"""Host-wide locks between the kit's processes (``tox p`` runs several at
once): an abstract Unix socket bound under the lock's name.  Only one
process can hold the name; the kernel frees it when that process exits,
however it exits, and nothing is left on disk."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from conformance.errors import KitError
from conformance.waiting import WaitTimeout, wait_until

POLL_S = 0.5


@contextmanager
def host_lock(name: str, timeout: float, what: str) -> Iterator[None]:
    """Hold the lock ``name`` for the block; wait for it at most ``timeout`` seconds."""
    address = "\0bgw-conformance/" + hashlib.sha256(name.encode()).hexdigest()[:32]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def bound() -> bool:
        try:
            sock.bind(address)
        except OSError:
            return False
        return True

    try:
        try:
            wait_until(bound, timeout, what=f"the host lock {name!r}", interval=POLL_S, retry_on=())
        except WaitTimeout:
            raise KitError(
                f"waited {timeout:g}s for another bgw-conformance process {what}; is one stuck?"
            ) from None
        yield
    finally:
        sock.close()
