"""``featurebus delete-keys`` and ``featurebus destroy``, both through the control plane.

``delete-keys VIEW --keys FILE`` deletes the entities named in a CSV or Parquet file (one column
per join key) and prints the receipt. ``destroy --workspace W`` plans the removal of every object
of the workspace (the plan of an empty repository: ``prevent_destroy`` blocks it as it blocks any
apply), shows it, asks, and applies it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from featurebus.schemas.errors import InvalidRequestError

__all__ = ["delete_keys_command", "destroy_command", "read_keys_file"]

console = Console(soft_wrap=True)

WorkspaceOption = Annotated[
    str,
    typer.Option("--workspace", "-w", help="Workspace name (default: the selected one, else 'default')."),
]


def read_keys_file(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV or Parquet file of join-key values, every value as text (the control plane
    converts each to its join key's type: leading zeros of string keys survive)."""
    import pandas as pd

    if not path.is_file():
        raise InvalidRequestError(f"keys file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path).astype(str)
    else:
        raise InvalidRequestError(f"keys file {path}: use a .csv or .parquet file with one column per join key")
    if frame.empty:
        raise InvalidRequestError(f"keys file {path} holds no rows")
    return [{str(k): str(v) for k, v in row.items()} for row in frame.to_dict("records")]


def delete_keys_command(
    view: Annotated[str, typer.Argument(help="The feature view or feature table whose entities to delete.")],
    keys: Annotated[
        Path, typer.Option("--keys", help="CSV or Parquet file: one column per join key, a row per entity.")
    ],
    workspace: WorkspaceOption = "default",
    online: Annotated[bool, typer.Option("--online/--no-online", help="Delete the served values.")] = True,
    offline: Annotated[bool, typer.Option("--offline/--no-offline", help="Delete the offline store's rows.")] = True,
    include_sources: Annotated[
        bool, typer.Option("--include-sources", help="Also tombstone their records on compacted source topics.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False,
) -> None:
    """Delete entities' values online, offline (and from source topics) and print the receipt."""
    from featurebus.control_client import ControlClient
    from featurebus.platform.deletes.receipt import DeleteReceipt

    rows = read_keys_file(keys)
    client = ControlClient.from_config()
    try:
        document = client.post(
            f"/v1/workspaces/{workspace}/deletes",
            {"view": view, "keys": rows, "online": online, "offline": offline, "include_sources": include_sources},
        )
    finally:
        client.close()
    if as_json:
        typer.echo(json.dumps(document, indent=2))
    else:
        console.print(DeleteReceipt.from_json(document).render(), highlight=False, markup=False)


def destroy_command(
    workspace: WorkspaceOption = "default",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every object of a workspace (after showing the plan); the workspace itself stays."""
    import orjson

    from featurebus.cli_control import current_spec
    from featurebus.control_client import ControlClient
    from featurebus.plan import plan
    from featurebus.plan_render import render_plan
    from featurebus.schemas.specs import WorkspaceSpec

    client = ControlClient.from_config()
    try:
        current = current_spec(client, workspace)
        empty = WorkspaceSpec(name=workspace, live=current.live)
        changes = plan(current, empty)  # DefinitionError naming any object with prevent_destroy=True
        if changes.is_empty:
            console.print(f"Workspace {workspace} holds no objects; nothing to destroy.", highlight=False)
            return
        console.print(render_plan(changes, color=True), highlight=False, soft_wrap=True)
        if not yes and not typer.confirm(f"Delete every object above from workspace {workspace}?", default=False):
            console.print("Nothing was deleted.")
            raise typer.Exit(1)
        result = client.post(
            f"/v1/workspaces/{workspace}/apply",
            {"spec": orjson.loads(empty.to_json()), "base_version": current.version},
        )
    finally:
        client.close()
    console.print(
        f"Destroyed every object of workspace {workspace} (now v{result['version']}); "
        f"`featurebus workspace delete {workspace}` removes the workspace itself.",
        highlight=False,
    )
