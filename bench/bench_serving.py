"""Online serving: featurebus's HTTP API next to Feast's feature server (``feast serve``).

Workload: N users with 1-6 card transactions each over the last day and 1,000 merchants; a
10-feature service (``examples/fraud``'s ``fraud_detection``: six continuous user windows, four
merchant windows in 5-minute tiles). featurebus computes the windows at request time from the
tiles its processes materialized from the feature topics (see ``serving_data`` for how the
tiles got there); Feast serves the same ten values precomputed and materialized into its SQLite
online store with ``feast materialize`` (Feast has no request-time windows), in its own venv.

One load generator (``loadgen.py``, a separate process) drives both: single lookups
(``get-features`` vs ``get-online-features`` with one entity row) and batches of 100
(``get-features-batch`` vs ``get-online-features`` with 100 entity rows), at concurrency 1 and
16, with 1 and 2 server processes each. Every combination reports requests/s, p50 and p99, with
Feast's figure in ``detail.peer_value`` and ``ratio`` > 1 when featurebus does better.
"""

from __future__ import annotations

import json
import logging
import math
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.fraud_setup import apply_fraud
from bench.harness import BenchContext, emit, load_1m, median, ratio
from bench.loadgen import LoadSpec
from bench.peer_venv import FEAST_VERSION, feast_python
from bench.serving_data import Dataset, feast_tables, make_dataset, publish_tiles
from bench.serving_servers import Server, run_loadgen, start_feast, start_featurebus

__all__ = ["run"]

log = logging.getLogger(__name__)

PEER = f"feast {FEAST_VERSION} (feast serve, SQLite online store)"
SERVICE = "fraud_detection"
FEAST_APP = Path(__file__).resolve().parent / "peers" / "feast_repo.py"


@dataclass(frozen=True)
class Sizes:
    users: int
    merchants: int
    seconds: float  # measured per combination and repetition
    warmup_s: float
    repeats: int
    workers: tuple[int, ...] = (1, 2)
    concurrency: tuple[int, ...] = (1, 16)
    batch: tuple[int, ...] = (1, 100)


FULL = Sizes(users=100_000, merchants=1_000, seconds=5.0, warmup_s=1.0, repeats=3)
# Quick: a smoke run in about two minutes; Feast's materialization is most of it, hence fewer users.
QUICK = Sizes(users=5_000, merchants=1_000, seconds=1.5, warmup_s=0.5, repeats=1)

Combo = tuple[int, int, int]  # (workers, batch, concurrency)


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    sizes = QUICK if ctx.quick else FULL
    bootstrap = ctx.kafka_bootstrap()
    feast = feast_python()  # first: a missing peer venv takes minutes to build, fail early if it cannot
    data = make_dataset(sizes.users, sizes.merchants)
    workspace = f"bench-{ctx.run_id}-serving"
    topic = f"bench.{ctx.run_id}.serving-transactions"
    # Both stores fill at once: Feast's materialization runs in its own process meanwhile.
    repo, materializing = _start_feast_repo(ctx, feast, data)
    spec, secret = apply_fraud(bootstrap, workspace, topic)
    events = publish_tiles(bootstrap, spec, topic, data)
    _wait_materialized(materializing, data, ctx)
    bodies = _bodies(data, sizes)

    ours: dict[Combo, list[dict[str, Any]]] = {}
    theirs: dict[Combo, list[dict[str, Any]]] = {}
    checks: dict[str, Any] = {}
    for workers in sizes.workers:
        server = start_featurebus(ctx, bootstrap, workers)
        try:
            if workers == sizes.workers[0]:
                checks["featurebus_sums_1d"] = _featurebus_sums(server, workspace, secret, data)
            _measure(
                ctx,
                server,
                sizes,
                workers,
                ours,
                partial(_featurebus_spec, workspace=workspace, secret=secret, bodies=bodies),
            )
        finally:
            server.stop()
        server = start_feast(ctx, feast, repo, workers)
        try:
            if workers == sizes.workers[0]:
                checks["feast_sums_1d"] = _feast_sums(server, data)
            _measure(ctx, server, sizes, workers, theirs, partial(_feast_spec, bodies=bodies))
        finally:
            server.stop()
    mismatched = _compare(checks["featurebus_sums_1d"], checks["feast_sums_1d"])
    if mismatched:
        log.warning(
            "serving: %d of %d users get a different 1-day sum from featurebus and Feast",
            mismatched,
            len(checks["feast_sums_1d"]),
        )
    return _results(
        sizes,
        ours,
        theirs,
        {
            "users": sizes.users,
            "merchants": sizes.merchants,
            "events": events,
            "sum_check": {"users": len(checks["feast_sums_1d"]), "mismatched": mismatched},
        },
    )


# -- setup ----------------------------------------------------------------------------------------
def _start_feast_repo(ctx: BenchContext, feast: Path, data: Dataset) -> tuple[Path, subprocess.Popen[bytes]]:
    """Write the Feast repository and start ``feast apply`` + ``feast materialize`` on it."""
    repo = ctx.scratch("feast-repo")
    users, merchants = feast_tables(data)
    users.to_parquet(repo / "users.parquet")
    merchants.to_parquet(repo / "merchants.parquet")
    with (ctx.scratch("serving-logs") / "feast-materialize.log").open("ab") as out:
        process = subprocess.Popen(
            [str(feast), str(FEAST_APP), str(repo), str(repo / "users.parquet"), str(repo / "merchants.parquet")],
            cwd=repo,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_if_running() -> None:
        if process.poll() is None:
            process.kill()  # only when the benchmark failed before it finished

    ctx.on_close(kill_if_running)
    return repo, process


def _wait_materialized(
    process: subprocess.Popen[bytes], data: Dataset, ctx: BenchContext, timeout_s: float = 900
) -> None:
    started = time.monotonic()
    code = process.wait(timeout_s)
    if code != 0:
        log_path = ctx.scratch("serving-logs") / "feast-materialize.log"
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"feast apply/materialize failed with {code}:\n{tail}")
    log.info(
        "feast apply + materialize of %d users and %d merchants done (waited %.1fs after featurebus's tiles)",
        data.users,
        data.merchants,
        time.monotonic() - started,
    )


def _bodies(data: Dataset, sizes: Sizes) -> dict[int, list[list[tuple[str, str]]]]:
    """The same entity rows for both servers: per batch size, a list of requests' rows."""
    rng = random.Random(5)
    out = {}
    for batch in sizes.batch:
        count = 2_000 if batch == 1 else 200
        out[batch] = [
            [(data.user(rng.randrange(data.users)), data.merchant(rng.randrange(data.merchants))) for _ in range(batch)]
            for _ in range(count)
        ]
    return out


def _featurebus_spec(
    server: Server, batch: int, *, workspace: str, secret: str, bodies: dict[int, list[list[tuple[str, str]]]]
) -> LoadSpec:
    def params(rows: list[tuple[str, str]]) -> dict[str, Any]:
        common = {"workspaceName": workspace, "featureServiceName": SERVICE}
        if batch == 1:
            return {**common, "joinKeyMap": {"user_id": rows[0][0], "merchant_id": rows[0][1]}}
        return {**common, "requestData": [{"joinKeyMap": {"user_id": u, "merchant_id": m}} for u, m in rows]}

    path = "/api/v1/feature-service/get-features" + ("" if batch == 1 else "-batch")
    return LoadSpec(
        "127.0.0.1",
        server.port,
        path,
        [json.dumps({"params": params(rows)}) for rows in bodies[batch]],
        concurrency=1,
        duration_s=1.0,
        headers={"Authorization": f"Tecton-key {secret}"},
    )


def _feast_spec(server: Server, batch: int, *, bodies: dict[int, list[list[tuple[str, str]]]]) -> LoadSpec:
    def body(rows: list[tuple[str, str]]) -> str:
        return json.dumps(
            {
                "feature_service": SERVICE,
                "entities": {"user_id": [u for u, _ in rows], "merchant_id": [m for _, m in rows]},
            }
        )

    return LoadSpec(
        "127.0.0.1",
        server.port,
        "/get-online-features",
        [body(rows) for rows in bodies[batch]],
        concurrency=1,
        duration_s=1.0,
    )


# -- measuring ------------------------------------------------------------------------------------
def _measure(
    ctx: BenchContext,
    server: Server,
    sizes: Sizes,
    workers: int,
    into: dict[Combo, list[dict[str, Any]]],
    spec_for: Callable[..., LoadSpec],
) -> None:
    for batch in sizes.batch:
        base = spec_for(server, batch)
        for concurrency in sizes.concurrency:
            for rep in range(sizes.repeats):
                spec = LoadSpec(
                    base.host,
                    base.port,
                    base.path,
                    base.bodies,
                    concurrency,
                    sizes.seconds,
                    sizes.warmup_s,
                    base.headers,
                )
                result = run_loadgen(ctx, spec, f"{server.name}-b{batch}-c{concurrency}-r{rep}")
                result["load_1m"] = load_1m()  # others' work on the machine skews single runs: keep it
                server.check()
                if result["errors"]:
                    raise RuntimeError(
                        f"{server.name}: {result['errors']} failed requests, first: {result['first_error']}"
                    )
                log.info(
                    "%s batch=%d concurrency=%d: %.0f req/s, p50 %.2f ms, p99 %.2f ms",
                    server.name,
                    batch,
                    concurrency,
                    result["requests_per_s"],
                    result["p50_ms"] or math.nan,
                    result["p99_ms"] or math.nan,
                )
                into.setdefault((workers, batch, concurrency), []).append(result)


def _results(
    sizes: Sizes,
    ours: dict[Combo, list[dict[str, Any]]],
    theirs: dict[Combo, list[dict[str, Any]]],
    common: dict[str, Any],
) -> list[dict[str, Any]]:
    results = []
    for combo in sorted(ours):
        workers, batch, concurrency = combo
        name = f"{'single' if batch == 1 else f'batch{batch}'}_c{concurrency}_w{workers}"
        for key, unit, higher in (
            ("requests_per_s", "requests/s", True),
            ("p50_ms", "ms", False),
            ("p99_ms", "ms", False),
        ):
            mine = [r[key] for r in ours[combo] if r[key] is not None]
            peer = [r[key] for r in theirs.get(combo, []) if r[key] is not None]
            value = median(mine) if mine else None
            peer_value = median(peer) if peer else None
            results.append(
                emit(
                    "serving",
                    f"{name}_{key}",
                    value,
                    unit,
                    PEER,
                    ratio(value, peer_value, higher),
                    {
                        "peer_value": None if peer_value is None else round(peer_value, 3),
                        "samples": [round(v, 3) for v in mine],
                        "peer_samples": [round(v, 3) for v in peer],
                        "workers": workers,
                        "batch": batch,
                        "concurrency": concurrency,
                        "seconds": sizes.seconds,
                        "requests": sum(r["requests"] for r in ours[combo]),
                        "peer_requests": sum(r["requests"] for r in theirs.get(combo, [])),
                        "load_1m": [r["load_1m"] for r in ours[combo]],
                        "peer_load_1m": [r["load_1m"] for r in theirs.get(combo, [])],
                        **common,
                    },
                )
            )
    return results


# -- the cross-check: both servers hold the same data ------------------------------------------------
def _featurebus_sums(
    server: Server, workspace: str, secret: str, data: Dataset, users: int = 100
) -> dict[str, float | None]:
    names = [data.user(i) for i in range(min(users, data.users))]
    response = httpx.post(
        f"{server.url}/api/v1/feature-service/get-features-batch",
        timeout=10.0,
        headers={"Authorization": f"Tecton-key {secret}"},
        json={
            "params": {
                "workspaceName": workspace,
                "featureServiceName": SERVICE,
                "requestData": [{"joinKeyMap": {"user_id": u, "merchant_id": data.merchant(0)}} for u in names],
            }
        },
    )
    response.raise_for_status()
    body = response.json()
    index = [m["name"] for m in body["metadata"]["features"]].index("user_transaction_stats.amount_sum_1d_continuous")
    return {u: row["features"][index] for u, row in zip(names, body["result"], strict=True)}


def _feast_sums(server: Server, data: Dataset, users: int = 100) -> dict[str, float | None]:
    names = [data.user(i) for i in range(min(users, data.users))]
    response = httpx.post(
        f"{server.url}/get-online-features",
        timeout=30.0,
        json={"features": ["user_transaction_stats:amount_sum_1d_continuous"], "entities": {"user_id": names}},
    )
    response.raise_for_status()
    body = response.json()
    index = body["metadata"]["feature_names"].index("amount_sum_1d_continuous")
    return dict(zip(names, body["results"][index]["values"], strict=True))


def _compare(ours: dict[str, float | None], theirs: dict[str, float | None]) -> int:
    def same(a: float | None, b: float | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(a, b, rel_tol=1e-9)

    return sum(not same(ours.get(u), v) for u, v in theirs.items())
