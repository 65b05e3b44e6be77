"""Entry point ``bin/flink run -pym featurebus.streams.runtime.flink.submit`` runs in the Flink CLI's
Python client (``job._submit_with_flink_cli``): the client's execution environment is the
cluster's, so executing the job submits it there."""

from __future__ import annotations

import argparse
from pathlib import Path

from featurebus.streams.runtime.flink.job import FlinkJobSettings, submit_in_cluster_client


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="featurebus.streams.runtime.flink.submit")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--savepoint")
    args = parser.parse_args(argv)
    submit_in_cluster_client(
        FlinkJobSettings(args.bootstrap, args.workspace, args.home, args.parallelism, savepoint=args.savepoint)
    )


if __name__ == "__main__":
    main()
