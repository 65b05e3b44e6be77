"""The control plane's service layer in one object, and its first start-up's admin.

``ControlPlane`` wires the registry, the access records and the audit log into the five services
the HTTP layer (``featurebus.serving.control``) puts routes in front of. No web framework here.
"""

from __future__ import annotations

from pathlib import Path

from featurebus.platform.access.manage import AccessAdmin
from featurebus.platform.access.records import PrincipalKind
from featurebus.platform.control.audit import AuditLog, Outcome
from featurebus.platform.control.catalog import Catalog
from featurebus.platform.control.definitions import Definitions
from featurebus.platform.control.deletes import Deletes
from featurebus.platform.control.explain import Explainer
from featurebus.platform.control.guard import Call, Guard
from featurebus.platform.control.history import History
from featurebus.platform.control.offline import OfflineAccess
from featurebus.platform.control.operations import Jobs
from featurebus.platform.control.principals import Access
from featurebus.platform.registry.base import Registry
from featurebus.schemas.errors import InvalidRequestError

__all__ = ["BOOTSTRAP_ADMIN", "ControlPlane"]

BOOTSTRAP_ADMIN = "admin"


class ControlPlane:
    def __init__(
        self,
        registry: Registry,
        audit: AuditLog,
        *,
        refresh_s: float = 5.0,
        bootstrap: str | None = None,
        offline_root: Path | None = None,
    ) -> None:
        """``bootstrap`` and ``offline_root``: where deletes write (tombstones, rewritten files);
        without them the deletes route refuses, naming what is missing."""
        self.registry = registry
        self.guard = Guard(AccessAdmin(registry), audit, refresh_s=refresh_s)
        self.definitions = Definitions(registry, self.guard)
        self.catalog = Catalog(registry, self.guard)
        self.jobs = Jobs(registry, self.guard, read_spec=self.catalog.specs.get)
        self.access = Access(self.guard)
        self.offline = OfflineAccess(registry, self.guard)
        self.history = History(registry, self.guard)
        self.explainer = Explainer(self.catalog.specs, self.guard)
        self.deletes = Deletes(registry, self.guard, bootstrap, offline_root)

    def bootstrap_admin(self) -> str | None:
        """On the first start (no admin anywhere): create the ``admin`` service account and return
        its key's secret, to be shown once. None when an admin exists already."""
        admin = self.guard.access
        admin.refresh()
        if any(p.admin for p in admin.view.principals()):
            return None
        return self.admin_key("created by the first start of the control plane")

    def admin_key(self, description: str) -> str:
        """A new key of the ``admin`` service account (created, as an instance admin, if missing).

        For ``featurebus up`` in a home that holds no key yet: whoever runs it reaches the bus
        directly, which until the broker enforces ACLs (issue 15, item 4) is an admin's power
        anyway; every such key is in the audit log and revocable."""
        admin = self.guard.access
        admin.refresh()
        name = BOOTSTRAP_ADMIN
        principal = admin.view.principal(name)
        if principal is None:
            admin.create_principal(
                name, PrincipalKind.SERVICE_ACCOUNT, admin=True, description=description, created_by="bootstrap"
            )
        elif not principal.admin:
            raise InvalidRequestError(
                f"principal {name!r} exists but is not the instance admin; log in with an "
                "admin's key instead (`featurebus login --url URL --key KEY`)"
            )
        key, secret = admin.create_key(name, description)
        self.guard.record(
            Call(None, f"bootstrap-{key.key_id}"),
            "bootstrap",
            None,
            "keys.create",
            Outcome.OK,
            {"principal": name, "key": key.key_id, "admin": True, "description": description},
        )
        return secret
