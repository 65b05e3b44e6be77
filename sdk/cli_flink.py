"""``featurebus flink ...``: the Flink engine's commands (the connector jars, job submission).

``featurebus worker --engine flink`` runs a workspace's job in this process (development); these
commands fetch what it needs and submit it to a Flink cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["flink_app", "in_flink_python"]

flink_app = typer.Typer(
    help="The Flink engine: connector jars, job submission, a local standalone cluster.", no_args_is_help=True
)
console = Console(soft_wrap=True)

Bootstrap = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap (default: FEATUREBUS_KAFKA_BOOTSTRAP or the local broker)."),
]
Home = Annotated[
    Path | None, typer.Option("--home", help="State directory (default: FEATUREBUS_HOME or ./.featurebus).")
]
Workspace = Annotated[str, typer.Option("--workspace", "-w", help="Workspace name.")]


def _home(home: Path | None) -> Path:
    from featurebus.cli import _home as resolve_home

    return resolve_home(home)


def in_flink_python(args: list[str]) -> None:
    """Continue as ``featurebus ARGS`` in the Python that has the Flink extra (``flink_python``),
    unless this is it: the process is replaced, so a supervisor's PID stays the engine's."""
    from featurebus.platform.flink import flink_python

    python = flink_python()
    if python != sys.executable:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(python, [python, "-m", "featurebus", *args])


@flink_app.command("fetch")
def flink_fetch() -> None:
    """Resolve the Flink Kafka connector jars with Maven into the cache (once); check the install."""
    in_flink_python(["flink", "fetch"])
    from featurebus.platform.flink import check_flink_installed, ensure_flink_jars

    check_flink_installed()
    jars = ensure_flink_jars()
    console.print(f"Flink connector jars in {jars[0].parent}")


@flink_app.command("run")
def flink_run(
    workspace: Workspace = "default",
    parallelism: Annotated[int, typer.Option(min=1, help="The job's parallelism.")] = 1,
    savepoint: Annotated[
        str | None, typer.Option(help="Restore from this savepoint or retained checkpoint path.")
    ] = None,
    bootstrap: Bootstrap = None,
    home: Home = None,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            help="Serve the job's counters as Prometheus /metrics (the native worker's series) on this port of 127.0.0.1 (0: not at all).",
        ),
    ] = 0,
) -> None:
    """Run the workspace's job in this process (a local Flink mini-cluster) until SIGTERM/SIGINT,
    restarting it with each apply that changes its definitions: `featurebus worker --engine
    flink` with a parallelism and a savepoint to start from."""
    from featurebus.platform.config import resolve_bootstrap

    resolved_bootstrap, resolved_home = resolve_bootstrap(bootstrap), _home(home)
    in_flink_python(
        [
            "flink",
            "run",
            "--workspace",
            workspace,
            "--parallelism",
            str(parallelism),
            *(["--savepoint", savepoint] if savepoint else []),
            "--bootstrap",
            resolved_bootstrap,
            "--home",
            str(resolved_home),
            "--metrics-port",
            str(metrics_port),
        ]
    )
    from featurebus.streams.runtime.flink.job import run_flink_worker

    run_flink_worker(
        resolved_bootstrap,
        workspace,
        resolved_home,
        parallelism=parallelism,
        savepoint=savepoint,
        metrics_port=metrics_port,
    )


@flink_app.command("submit")
def flink_submit(
    jobmanager: Annotated[str, typer.Option("--jobmanager", help="HOST:PORT of the cluster's REST endpoint.")],
    workspace: Workspace = "default",
    parallelism: Annotated[int, typer.Option(min=1, help="The job's parallelism.")] = 1,
    savepoint: Annotated[
        str | None, typer.Option(help="Restore from this savepoint or retained checkpoint path.")
    ] = None,
    bootstrap: Bootstrap = None,
    home: Home = None,
) -> None:
    """Submit the workspace's job to a running Flink cluster and return (the cluster runs it)."""
    from featurebus.platform.config import resolve_bootstrap

    resolved_bootstrap, resolved_home = resolve_bootstrap(bootstrap), _home(home)
    in_flink_python(
        [
            "flink",
            "submit",
            "--jobmanager",
            jobmanager,
            "--workspace",
            workspace,
            "--parallelism",
            str(parallelism),
            *(["--savepoint", savepoint] if savepoint else []),
            "--bootstrap",
            resolved_bootstrap,
            "--home",
            str(resolved_home),
        ]
    )
    from featurebus.streams.runtime.flink.job import run_flink_worker

    run_flink_worker(
        resolved_bootstrap,
        workspace,
        resolved_home,
        parallelism=parallelism,
        jobmanager=jobmanager,
        savepoint=savepoint,
        detached=True,
    )
    console.print(f"submitted workspace {workspace}'s job to {jobmanager}")


cluster_app = typer.Typer(
    help="A standalone Flink cluster on 127.0.0.1 (a JobManager and TaskManagers).", no_args_is_help=True
)
flink_app.add_typer(cluster_app, name="cluster")


@cluster_app.command("start")
def cluster_start(
    taskmanagers: Annotated[int, typer.Option(min=1, help="TaskManager processes.")] = 2,
    home: Home = None,
) -> None:
    """Start a JobManager and TaskManagers from the installed apache-flink (kept until `stop`)."""
    resolved_home = _home(home)
    in_flink_python(["flink", "cluster", "start", "--taskmanagers", str(taskmanagers), "--home", str(resolved_home)])
    from featurebus.platform.flink.cluster import FlinkCluster

    info = FlinkCluster(resolved_home).start(taskmanagers)
    console.print(f"Flink cluster running: JobManager {info.jobmanager}, {info.taskmanagers} TaskManagers")


@cluster_app.command("stop")
def cluster_stop(home: Home = None) -> None:
    """Stop the cluster `featurebus flink cluster start` started."""
    resolved_home = _home(home)
    in_flink_python(["flink", "cluster", "stop", "--home", str(resolved_home)])
    from featurebus.platform.flink.cluster import FlinkCluster

    console.print("Flink cluster stopped" if FlinkCluster(resolved_home).stop() else "no Flink cluster was running")
