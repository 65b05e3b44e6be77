"""The one readiness rule of a serving process, shared by every request path and by ``/ready``.

A process answers feature requests (and ingestion, metrics, the OpenAPI document: everything that
checks an API key) only once its online materializer caught up with the bus since start: its API
keys and specs are complete and its online copy holds every record that was on the feature topics
when it started. Before that, a valid key could be unknown yet (401) and counts partial, so it
answers 503 with ``Retry-After`` instead. The rule is the same for one process (``featurebus up``,
``featurebus serve``) and for each process of ``--workers N`` (which additionally accepts no
connection before then, so its siblings answer meanwhile).

Once caught up the gate stays open for the life of the process: if the broker goes away later,
the process keeps answering from its copy (stale but complete) while ``/ready`` reports why it is
going stale, so a load balancer can prefer replicas that are current.
"""

from __future__ import annotations

from featurebus.platform.access.view import Caller
from featurebus.platform.api_keys import ApiKeyStore
from featurebus.schemas.errors import NotReadyError
from featurebus.serving.online_materializer import OnlineMaterializer

__all__ = ["Admission", "Readiness", "RETRY_AFTER_S"]

RETRY_AFTER_S = 1  # catching up takes about a second per 400k tile records (see main.py)


class Readiness:
    """Open once ``materializer`` caught up since start (always open without a materializer:
    a server over a fixed store, as in tests and embedding)."""

    __slots__ = ("_materializer", "_open")

    def __init__(self, materializer: OnlineMaterializer | None) -> None:
        self._materializer = materializer
        self._open = materializer is None

    def check(self) -> None:
        """Return if the process may answer, else raise ``NotReadyError`` saying why not."""
        if self._open:  # the hot path: one attribute read
            return
        reason = self.not_ready_reason()
        if reason is not None:
            raise NotReadyError(reason, RETRY_AFTER_S)

    def not_ready_reason(self) -> str | None:
        """None once open; else why requests are refused (the message of the 503s)."""
        materializer = self._materializer
        if self._open or materializer is None:
            return None
        if materializer.ready():
            self._open = True  # latched: see the module docstring
            return None
        if materializer.error is not None:
            return f"this serving process has not caught up with the bus since it started: {materializer.error}"
        lag = materializer.lag()
        return (
            f"this serving process is catching up with the bus since it started ({sum(lag.values())} records "
            f"behind on {len(lag)} partitions); its API keys and online copy are not complete yet"
        )

    def stale_reason(self) -> str | None:
        """Why an open process's copy is going stale (the broker is unreachable), else None."""
        materializer = self._materializer
        return None if materializer is None else materializer.error


class Admission:
    """What a request must pass before its body is read: the process is ready, and the
    ``Authorization`` header carries a known key. Checked from the headers alone, so an
    anonymous client never gets the server to buffer its body."""

    __slots__ = ("keys", "readiness")

    def __init__(self, readiness: Readiness, keys: ApiKeyStore) -> None:
        self.readiness = readiness
        self.keys = keys

    def admit(self, authorization: str | None) -> Caller:
        self.readiness.check()  # before the keys: until caught up, a valid key may be unknown yet
        return self.keys.authenticate(authorization)
