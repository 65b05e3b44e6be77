"""``featurebus kafka setup``: prepare a secured Kafka cluster for the platform's components.

What `featurebus up` does for the broker it starts, for a cluster run elsewhere (docker/compose.yaml,
production): one SCRAM principal per component with only the rights it needs (Kafka ACLs,
``featurebus.platform.kafka.rights``) and the live workspace the platform materializes. It runs with
the cluster admin's credentials (``FEATUREBUS_KAFKA_SASL_USERNAME`` / ``_PASSWORD``); each
component's password comes from ``FEATUREBUS_KAFKA_PASSWORD_<COMPONENT>`` (``CONTROL``, ``WORKER``,
``SERVING``, ``OFFLINE``, ``JOBS``), or is generated into ``<home>/kafka/credentials.json`` (0600).
Idempotent: run it on every deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["kafka_setup"]


def kafka_setup(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="The live workspace to create if missing.")] = (
        "default"
    ),
    bootstrap: Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap of the cluster.")] = None,
    home: Annotated[Path | None, typer.Option("--home", help="State directory (generated passwords).")] = None,
) -> None:
    """Create each component's Kafka principal and ACLs, and the live workspace (cluster admin only)."""
    from featurebus.platform.config import home_dir, resolve_bootstrap
    from featurebus.platform.kafka.credentials import Component, load_or_create_credentials, with_passwords_from_env
    from featurebus.platform.local.up import ensure_live_workspace, grant_platform_rights

    cluster = resolve_bootstrap(bootstrap)
    credentials = with_passwords_from_env(
        load_or_create_credentials((home.resolve() if home else home_dir()) / "kafka")
    )
    ensure_live_workspace(cluster, workspace)
    grant_platform_rights(cluster, credentials, workspace)
    names = ", ".join(c.username for c in Component)
    typer.echo(f"Kafka at {cluster}: principals {names} hold their rights; workspace {workspace!r} is live")
