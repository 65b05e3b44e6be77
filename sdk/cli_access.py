"""``featurebus login``, ``control``, ``service-account``, ``access-control`` and ``audit``: the
commands that exist only with the control plane (Tecton's names for them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from featurebus.control_client import ControlClient

__all__ = ["access_app", "audit_app", "control", "login", "service_account_app"]

console = Console(soft_wrap=True)
service_account_app = typer.Typer(
    help="Service accounts: principals for programs, each with API keys.", no_args_is_help=True
)
access_app = typer.Typer(
    help="Role bindings: viewer < consumer < operator < editor < owner, per workspace.", no_args_is_help=True
)
audit_app = typer.Typer(help="The audit log of every change and every refused request.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for tools.")]
Workspace = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name (default: the selected one).")]


def _client() -> ControlClient:
    return ControlClient.from_config()


def _echo_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2))


def login(
    url: Annotated[str, typer.Option("--url", help="The control plane, e.g. http://127.0.0.1:8090.")],
    key: Annotated[str | None, typer.Option("--key", help="An API key (prompted for when not given).")] = None,
    serving_url: Annotated[
        str | None,
        typer.Option(
            "--serving-url", help="The serving API, e.g. http://127.0.0.1:8080: where FeatureTable.ingest sends rows."
        ),
    ] = None,
) -> None:
    """Store the control plane's URL and an API key (and the serving API's URL) in the featurebus
    config (mode 0600)."""
    from featurebus.platform.config import save_control_login

    secret = key or typer.prompt("API key", hide_input=True)
    client = ControlClient(url, secret)
    try:
        me = client.get("/v1/whoami")
    finally:
        client.close()
    path = save_control_login(url, secret, serving_url=serving_url)
    roles = ", ".join(f"{r['role']} in {r['workspace']}" for r in me["roles"]) or "no workspace roles"
    console.print(
        f"Logged in to {url} as {me['principal']}{' (admin)' if me['admin'] else ''}: {roles}; saved in {path}",
        highlight=False,
        markup=False,
    )


def control(
    port: Annotated[int, typer.Option(help="Port.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    bootstrap: Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap.")] = None,
    home: Annotated[Path | None, typer.Option("--home", help="State directory.")] = None,
    monitor_url: Annotated[
        str | None, typer.Option("--monitor-url", help="The alert evaluator's URL (`featurebus monitor --port`).")
    ] = None,
) -> None:
    """Run the control plane: the only writer of definitions, jobs, principals and the audit log."""
    from featurebus.platform.config import home_dir, resolve_bootstrap
    from featurebus.serving.control.main import run_control

    run_control(
        resolve_bootstrap(bootstrap),
        home.resolve() if home else home_dir(),
        host=host,
        port=port,
        monitor_url=monitor_url,
    )


# -- service accounts ---------------------------------------------------------------------------
@service_account_app.command("create")
def service_account_create(
    name: Annotated[str, typer.Option("--name", help="Its name: letters, digits, '_', '-', '.', '@'.")],
    description: Annotated[str, typer.Option("--description")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Make it an instance admin.")] = False,
) -> None:
    """Create a service account and one API key for it (printed once). Admin only."""
    client = _client()
    try:
        client.post(
            "/v1/principals", {"name": name, "kind": "service_account", "admin": admin, "description": description}
        )
        key = client.post("/v1/keys", {"principal": name, "description": "created with the service account"})
    finally:
        client.close()
    console.print(
        f"Created service account {name}; API key {key['keyId']}, secret (shown once):\n  {key['secret']}\n"
        f"Give it a role: featurebus access-control assign-role --principal {name} --role consumer -w WORKSPACE",
        highlight=False,
        markup=False,
    )


@service_account_app.command("list")
def service_account_list(as_json: AsJson = False) -> None:
    """Every service account (admin only)."""
    client = _client()
    try:
        accounts = [p for p in client.get("/v1/principals") if p["kind"] == "service_account"]
    finally:
        client.close()
    if as_json:
        _echo_json(accounts)
        return
    for account in accounts:
        console.print(
            f"{account['name']}{'  admin' if account['admin'] else ''}  {account['description']}",
            highlight=False,
            markup=False,
        )


@service_account_app.command("delete")
def service_account_delete(name: Annotated[str, typer.Argument(help="The service account.")]) -> None:
    """Delete a service account with its keys and role bindings (admin only)."""
    client = _client()
    try:
        client.delete(f"/v1/principals/{name}")
    finally:
        client.close()
    console.print(f"Deleted service account {name}", highlight=False, markup=False)


# -- role bindings --------------------------------------------------------------------------------
@access_app.command("assign-role")
def assign_role(
    principal: Annotated[str, typer.Option("--principal", "-p")],
    role: Annotated[str, typer.Option("--role", "-r", help="viewer|consumer|operator|editor|owner")],
    workspace: Workspace = "default",
) -> None:
    """Bind a role to a principal in the workspace (the workspace's owner or the admin)."""
    client = _client()
    try:
        binding = client.put("/v1/roles", {"principal": principal, "workspace": workspace, "role": role})
    finally:
        client.close()
    console.print(f"{principal} is {binding['role']} in {workspace}", highlight=False, markup=False)


@access_app.command("unassign-role")
def unassign_role(
    principal: Annotated[str, typer.Option("--principal", "-p")], workspace: Workspace = "default"
) -> None:
    """Remove a principal's role in the workspace."""
    client = _client()
    try:
        client.delete("/v1/roles", principal=principal, workspace=workspace)
    finally:
        client.close()
    console.print(f"{principal} has no role in {workspace} any more", highlight=False, markup=False)


@access_app.command("get-roles")
def get_roles(
    principal: Annotated[str | None, typer.Option("--principal", "-p")] = None,
    workspace: Annotated[str | None, typer.Option("--workspace", "-w")] = None,
    as_json: AsJson = False,
) -> None:
    """Role bindings: a principal's, a workspace's, or (admin) all."""
    client = _client()
    try:
        bindings = client.get("/v1/roles", principal=principal, workspace=workspace)
    finally:
        client.close()
    if as_json:
        _echo_json(bindings)
        return
    for binding in bindings:
        console.print(
            f"{binding['workspace']}  {binding['principal']}  {binding['role']}", highlight=False, markup=False
        )


# -- audit ----------------------------------------------------------------------------------------
@audit_app.command("log")
def audit_log(
    workspace: Annotated[str | None, typer.Option("--workspace", "-w")] = None,
    principal: Annotated[str | None, typer.Option("--principal", "-p")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 time (UTC unless a zone is given).")] = None,
    as_json: AsJson = False,
) -> None:
    """Who did what, when, where, and whether it was allowed; oldest first."""
    from featurebus.cli_jobs import parse_time

    client = _client()
    try:
        records = client.get(
            "/v1/audit",
            workspace=workspace,
            principal=principal,
            since_ms=parse_time(since, "--since") if since else None,
        )
    finally:
        client.close()
    if as_json:
        _echo_json(records)
        return
    from datetime import UTC, datetime

    for r in records:
        when = datetime.fromtimestamp(r["time_ms"] / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        detail = ", ".join(f"{k}={v}" for k, v in r["detail"].items() if k != "message")
        message = r["detail"].get("message", "")
        console.print(
            f"{when}  {r['principal'] or '-'}  {r['workspace'] or '-'}  {r['action']}  {r['outcome']}  "
            f"{detail}{('  ' + message) if message else ''}  [{r['request_id']}]",
            highlight=False,
            markup=False,
        )
