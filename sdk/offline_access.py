"""The control plane's word before the SDK reads a workspace's offline store.

Training sets and ad hoc reads (``get_features_for_events``, ``get_features_in_range``, the CLI's
``training-set``) read the offline store's files directly. When a control-plane login is
configured (``featurebus login``, or ``FEATUREBUS_API_KEY``), they first ask the control plane to
confirm the caller holds ``viewer`` or above in every workspace whose files they read; a refusal
names the role missing and how to get it. Without a login nothing is asked: then the files' own
permissions are the only guard, as for any Parquet dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from featurebus.schemas.errors import AuthenticationError, PermissionDeniedError

if TYPE_CHECKING:
    from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["applied_specs_via_control", "confirm_before_training_set", "confirm_offline_read", "read_workspaces"]


def read_workspaces(workspace: str, offline_data: Mapping[str, tuple[tuple[str, str], ...]] | None) -> set[str]:
    """The workspaces whose offline files a read of ``workspace`` touches: its own, or for a
    development workspace the live ones it reads (``platform.offline.locations``)."""
    if offline_data is None:
        return {workspace}
    return {workspace} | {owner for pairs in offline_data.values() for owner, _ in pairs}


def confirm_offline_read(workspaces: Iterable[str], home: Path | None = None) -> None:
    """Raise unless the logged-in caller may read each of ``workspaces``' offline data."""
    from featurebus.control_client import ControlClient
    from featurebus.platform.config import control_login

    url, key = control_login(home)
    if key is None:
        return
    client = ControlClient(url, key)
    try:
        for workspace in sorted(set(workspaces)):
            try:
                client.get(f"/v1/workspaces/{workspace}/offline-access")
            except PermissionDeniedError as exc:
                raise PermissionDeniedError(
                    f"reading workspace {workspace!r}'s offline store (training sets, ad hoc reads) needs the "
                    f"'viewer' role or higher there: {exc}"
                ) from None
            except AuthenticationError as exc:
                raise AuthenticationError(
                    f"the control plane at {url} refused the stored API key before reading workspace "
                    f"{workspace!r}'s offline store: {exc}; log in again: `featurebus login --url {url} --key KEY`"
                ) from None
    finally:
        client.close()


def confirm_before_training_set(specs: Mapping[str, WorkspaceSpec], workspace: str, home: Path | None = None) -> None:
    """``confirm_offline_read`` for the CLI's ``training-set`` over ``workspace`` (one the caller
    cannot see is asked about too: the control plane says which role is missing, or that it is unknown)."""
    from featurebus.platform.offline.locations import offline_locations

    spec = specs.get(workspace)
    if spec is None:
        confirm_offline_read([workspace], home)
        return
    confirm_offline_read(read_workspaces(workspace, None if spec.live else offline_locations(spec, specs)), home)


def applied_specs_via_control(home: Path | None = None) -> dict[str, WorkspaceSpec] | None:
    """Every workspace the logged-in caller may read, from the control plane; None without a login."""
    import orjson

    from featurebus.control_client import ControlClient
    from featurebus.platform.config import control_login
    from featurebus.schemas.specs import WorkspaceSpec

    url, key = control_login(home)
    if key is None:
        return None
    client = ControlClient(url, key)
    try:
        names = [summary["name"] for summary in client.get("/v1/workspaces")]
        documents = {name: client.get(f"/v1/workspaces/{name}") for name in names}
    finally:
        client.close()
    return {name: WorkspaceSpec.from_json(orjson.dumps(doc["spec"])) for name, doc in documents.items()}
