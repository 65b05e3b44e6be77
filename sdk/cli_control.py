"""The CLI's commands over the control plane (the default; ``--bootstrap`` talks to a bus directly,
see ``featurebus.cli``). Each is a thin shell over one or two HTTP calls; the plan shown is
computed here from the workspace the control plane returns, with the same pure diff the server
re-runs when it applies (and refuses, 409, if the workspace moved meanwhile)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console

from featurebus.control_client import ControlClient
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = [
    "apply_via_control",
    "current_spec",
    "jobs_via_control",
    "keys_via_control",
    "materialize_via_control",
    "plan_via_control",
    "registry_log_via_control",
    "workspace_via_control",
]

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _iso(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def current_spec(client: ControlClient, workspace: str) -> WorkspaceSpec:
    document = client.get(f"/v1/workspaces/{workspace}")
    return WorkspaceSpec.from_json(orjson.dumps(document["spec"]))


def _print_plan(changes: Any) -> None:
    from featurebus.plan_render import render_plan

    console.print(render_plan(changes, color=True), highlight=False, soft_wrap=True)


# -- workspaces ------------------------------------------------------------------------------------
def workspace_via_control(action: str, name: str | None = None, *, live: bool = False, force: bool = False) -> Any:
    client = ControlClient.from_config()
    try:
        if action == "create":
            client.post("/v1/workspaces", {"name": name, "live": live})
            kind = (
                "live workspace (materialized and served)"
                if live
                else "development workspace (definitions only, never materialized)"
            )
            console.print(f"Created {kind} [bold]{name}[/]; `featurebus workspace select {name}` makes it the default.")
        elif action == "delete":
            deleted = client.delete(f"/v1/workspaces/{name}", force=str(force).lower())
            console.print(
                f"Deleted {'live' if deleted['live'] else 'development'} workspace {name}",
                highlight=False,
                markup=False,
            )
        elif action == "list":
            return client.get("/v1/workspaces")
        return None
    finally:
        client.close()


# -- plan, apply, log ------------------------------------------------------------------------------
def plan_via_control(repo: Path, workspace: str, as_json: bool) -> None:
    from featurebus.plan import plan
    from featurebus.repo import load_repo

    desired = load_repo(repo, workspace)
    client = ControlClient.from_config()
    try:
        current = current_spec(client, workspace)
    finally:
        client.close()
    changes = plan(current, desired)
    cluster, missing = _missing_topics(changes.apply_to(current))
    if as_json:
        from featurebus.plan_render import plan_to_json

        typer.echo(json.dumps({**plan_to_json(changes), "missing_source_topics": missing}, indent=2))
    else:
        _print_plan(changes)
        if missing:
            from featurebus.source_topics import missing_topics_note

            console.print(f"note: {missing_topics_note(missing, cluster)}", highlight=False, markup=False)


def apply_via_control(
    repo: Path, workspace: str, version_to_restore: int | None, create_topics: bool | None = None, partitions: int = 4
) -> None:
    from featurebus.plan import plan

    client = ControlClient.from_config()
    try:
        current = current_spec(client, workspace)
        if version_to_restore is None:
            from featurebus.repo import load_repo

            desired = load_repo(repo, workspace)
            changes = plan(current, desired)
            _print_plan(changes)
            _source_topics(changes.apply_to(current), create_topics, partitions)
            result = client.post(
                f"/v1/workspaces/{workspace}/apply",
                {"spec": orjson.loads(desired.to_json()), "base_version": current.version},
            )
        else:
            result = client.post(
                f"/v1/workspaces/{workspace}/rollback", {"version": version_to_restore, "base_version": current.version}
            )
            _print_plan_document(result["plan"])
        if result["applied"]:
            applied = current_spec(client, workspace)
    finally:
        client.close()
    if not result["applied"]:
        console.print(f"No changes; workspace {workspace} stays at v{result['version']}.")
        return
    console.print(
        f"Applied workspace [bold]{workspace}[/] v{applied.version}: {len(applied.entities)} entities, "
        f"{len(applied.stream_sources)} sources, {len(applied.stream_feature_views)} feature views, "
        f"{len(applied.feature_services)} feature services"
    )
    for job in result.get("backfillJobs", []):
        console.print(f"queued backfill job {job}", highlight=False)
    for note in result.get("notes", []):
        console.print(f"note: {note}", highlight=False)


def _missing_topics(spec: WorkspaceSpec) -> tuple[str, list[str]]:
    """(cluster, the spec's source topics missing there); ("", []) when no bus is known here."""
    from featurebus.platform.config import resolve_cluster
    from featurebus.schemas.errors import FeaturebusError
    from featurebus.source_topics import missing_source_topics

    try:
        cluster = resolve_cluster(None).bootstrap
        return cluster, missing_source_topics(spec, cluster)
    except FeaturebusError:
        return "", []


def _source_topics(spec: WorkspaceSpec, create_topics: bool | None, partitions: int) -> None:
    """The repository's own source topics are data, not definitions: as before the control plane,
    the CLI creates missing ones on a local development broker (or with --create-topics) when it
    can reach a bus, and notes them otherwise."""
    from featurebus.platform.config import resolve_cluster
    from featurebus.schemas.errors import FeaturebusError
    from featurebus.source_topics import create_source_topics, missing_source_topics, missing_topics_note

    try:
        target = resolve_cluster(None)
        missing = missing_source_topics(spec, target.bootstrap)
    except FeaturebusError:
        return  # no bus known on this machine: the definitions still apply
    if missing and (target.local if create_topics is None else create_topics):
        create_source_topics(missing, target.bootstrap, partitions)
        console.print(
            f"Created source topics {', '.join(missing)} ({partitions} partitions each) on {target.bootstrap}",
            highlight=False,
            markup=False,
        )
    elif missing:
        err.print(f"note: {missing_topics_note(missing, target.bootstrap)}", highlight=False, markup=False)


def _print_plan_document(document: dict[str, Any]) -> None:
    """A plan the server computed (a rollback), as lines like the local rendering's."""
    headers = {"create": "+ create", "update": "~ update", "delete": "- delete"}
    for change in document["changes"]:
        if change["action"] in headers:
            console.print(
                f"{headers[change['action']]} {change['kind']} {change['name']}", highlight=False, markup=False
            )
    summary = document["summary"]
    console.print(
        f"Plan for workspace {document['workspace']}: {summary['create']} to create, {summary['update']} to "
        f"update, {summary['delete']} to delete, {summary['unchanged']} unchanged.",
        highlight=False,
    )


def registry_log_via_control(workspace: str) -> None:
    from rich.table import Table

    client = ControlClient.from_config()
    try:
        rows = client.get(f"/v1/workspaces/{workspace}/log")
    finally:
        client.close()
    if not rows:
        console.print(f"workspace {workspace!r} has no applied versions")
        raise typer.Exit(1)
    table = Table(title=f"registry of workspace {workspace}")
    for column in ("version", "applied at (UTC)", "applied by", "views", "services", "changes"):
        table.add_column(column)
    for row in reversed(rows):
        changed = ", ".join(f"{n} {action}" for action, n in row["summary"].items() if n and action != "unchanged")
        table.add_row(
            f"v{row['version']}",
            _iso(row["appliedAtMs"]).replace("T", " ").rstrip("Z"),
            row["appliedBy"] or "-",
            str(row["views"]),
            str(row["services"]),
            changed or "none",
        )
    console.print(table)


# -- jobs -----------------------------------------------------------------------------------------
def materialize_via_control(
    workspace: str,
    view: str,
    start_ms: int,
    end_ms: int,
    *,
    online: bool | None,
    offline: bool | None,
    overwrite: bool,
    wait: bool,
) -> None:
    client = ControlClient.from_config()
    try:
        job = client.post(
            f"/v1/workspaces/{workspace}/jobs",
            {
                "view": view,
                "start_ms": start_ms,
                "end_ms": end_ms,
                "online": online,
                "offline": offline,
                "overwrite": overwrite,
            },
        )
        console.print(
            f"queued job {job['id']}: {view} [{_iso(job['start_ms'])}, {_iso(job['end_ms'])})", highlight=False
        )
        last = ""
        while wait:
            job = client.get(f"/v1/workspaces/{workspace}/jobs/{job['id']}")
            line = f"{job['state']} {job['progress']:.0%}"
            if line != last:
                console.print(f"job {job['id']}: {line}", highlight=False)
                last = line
            if job["state"] in ("SUCCESS", "FAILED", "CANCELLED"):
                if job["state"] != "SUCCESS":
                    raise InvalidRequestError(
                        f"job {job['id']} ended {job['state']}: {job.get('error') or 'cancelled'}"
                    )
                return
            time.sleep(1.0)
    finally:
        client.close()


def jobs_via_control(action: str, workspace: str, job_id: str | None = None, view: str | None = None) -> Any:
    client = ControlClient.from_config()
    try:
        if action == "list":
            return client.get(f"/v1/workspaces/{workspace}/jobs", view=view)
        if action == "show":
            return client.get(f"/v1/workspaces/{workspace}/jobs/{job_id}")
        if action == "compact":
            return client.post(f"/v1/workspaces/{workspace}/jobs/compact")
        return client.post(f"/v1/workspaces/{workspace}/jobs/{job_id}/{action}")  # cancel | retry
    finally:
        client.close()


# -- keys -----------------------------------------------------------------------------------------
def keys_via_control(
    action: str, *, workspace: str = "", role: str = "", description: str = "", key_id: str = ""
) -> None:
    client = ControlClient.from_config()
    try:
        if action == "create":
            key = client.post("/v1/keys", {"workspace": workspace, "role": role, "description": description})
            console.print(
                f"key id: {key['keyId']} (service account {key['principal']}, {key['role']} in {workspace})\n"
                f"secret (shown once): {key['secret']}",
                highlight=False,
                markup=False,
            )
        elif action == "list":
            for key in client.get("/v1/keys"):
                console.print(
                    f"{key['keyId']}  {key['principal']}  {key.get('description', '')}", highlight=False, markup=False
                )
        else:
            client.delete(f"/v1/keys/{key_id}")
            console.print(f"revoked {key_id}")
    finally:
        client.close()
