"""Who is calling, may they, and the audit record of what they did.

Every control-plane call goes through ``Guard``: it authenticates the ``Authorization`` header
against the access view, checks the action's role in the workspace, and appends to the audit log
the outcome of every mutating call and of every refused one (401 and 403 alike). Reads that are
allowed are not audited: the log stays a record of changes and of attempts.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from featurebus.platform.access.manage import AccessAdmin
from featurebus.platform.access.roles import Action
from featurebus.platform.access.view import Caller
from featurebus.platform.control.audit import AuditLog, AuditRecord, Outcome
from featurebus.schemas.errors import AuthenticationError, FeaturebusError, PermissionDeniedError

__all__ = ["Call", "Guard"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Call:
    """One request as the HTTP layer hands it over."""

    authorization: str | None
    request_id: str


class Guard:
    def __init__(
        self, access: AccessAdmin, audit: AuditLog, *, refresh_s: float = 5.0, clock_s: Callable[[], float] = time.time
    ) -> None:
        self.access = access
        self.audit = audit
        self._refresh_s = refresh_s
        self._clock_s = clock_s
        self._refreshed_at = clock_s()
        self._refresh_lock = threading.Lock()
        self._sequence = itertools.count()

    def _fresh_view(self) -> None:
        """Re-read the access records now and then: the control plane writes them, but keys made
        by ``featurebus.platform.api_keys`` directly (demo, tests, earlier tools) appear too."""
        if self._clock_s() - self._refreshed_at < self._refresh_s:
            return
        with self._refresh_lock:
            if self._clock_s() - self._refreshed_at >= self._refresh_s:
                self.access.refresh()
                self._refreshed_at = self._clock_s()

    def record(
        self,
        call: Call,
        principal: str,
        workspace: str | None,
        action: str,
        outcome: Outcome,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.audit.append(
            AuditRecord(
                record_id=f"{call.request_id}-{next(self._sequence)}",
                time_ms=int(self._clock_s() * 1000),
                principal=principal,
                workspace=workspace or "",
                action=action,
                outcome=outcome,
                request_id=call.request_id,
                detail=detail or {},
            )
        )

    def authenticate(self, call: Call, name: str, workspace: str | None = None) -> Caller:
        """The caller (any valid key); an unknown, revoked or expired one is audited and refused."""
        self._fresh_view()
        try:
            return self.access.view.authenticate(call.authorization)
        except AuthenticationError as exc:
            self.record(call, "", workspace, name, Outcome.UNAUTHENTICATED, {"message": str(exc)})
            raise

    def check(self, call: Call, workspace: str | None, action: Action, name: str | None = None) -> Caller:
        """The caller, if allowed to do ``action`` in ``workspace``; else audit and raise."""
        caller = self.authenticate(call, name or action.value, workspace)
        try:
            return self.access.view.permit(caller, workspace, action)
        except PermissionDeniedError as exc:
            self.record(call, caller.principal, workspace, name or action.value, Outcome.DENIED, {"message": str(exc)})
            raise

    def mutate(
        self,
        call: Call,
        workspace: str | None,
        action: Action | None,
        name: str,
        change: Callable[[Caller], tuple[T, dict[str, Any]]],
    ) -> T:
        """Check, run ``change`` (returning its result and the audit detail), audit the outcome.
        ``action`` None: any authenticated caller (a principal revoking its own key)."""
        caller = (
            self.authenticate(call, name, workspace) if action is None else self.check(call, workspace, action, name)
        )
        try:
            result, detail = change(caller)
        except FeaturebusError as exc:
            self.record(call, caller.principal, workspace, name, Outcome.FAILED, {"message": str(exc)})
            raise
        self.record(call, caller.principal, workspace, name, Outcome.OK, detail)
        return result
