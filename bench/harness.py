"""The benchmark runner and the helpers every benchmark shares.

Each ``bench/bench_*.py`` module exposes ``run(ctx: BenchContext) -> list[dict]``; the runner calls
them in name order and prints each returned result as one JSON line on stdout. Everything else
(progress, warnings, the peers' logs) goes to stderr, so ``python -m bench > results.jsonl`` keeps
only figures. A result is ``{"bench", "metric", "value", "unit", "peer", "ratio"}`` plus an
optional ``"detail"`` object (samples, the peer's own value, notes); ``emit`` enforces that.

One Kafka broker (``ctx.kafka_bootstrap()``) is started lazily and shared by the whole run;
every process started here is stopped by PID when the run ends, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import pkgutil
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "BenchContext",
    "KEYS",
    "load_1m",
    "emit",
    "main",
    "median",
    "percentile",
    "ratio",
    "validate",
]

log = logging.getLogger("bench")

KEYS = ("bench", "metric", "value", "unit", "peer", "ratio")
_OPTIONAL_KEYS = ("detail",)
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


# -- statistics ---------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linearly interpolated between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def ratio(value: float | None, peer_value: float | None, higher_is_better: bool) -> float | None:
    """How many times better featurebus does than its peer (> 1: featurebus wins)."""
    if value is None or peer_value is None or value <= 0 or peer_value <= 0:
        return None
    return round(value / peer_value if higher_is_better else peer_value / value, 3)


def load_1m() -> float | None:
    """The 1-minute load average: other work on the machine shows up here, so results carry it."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# -- results ------------------------------------------------------------------------------------
def validate(result: dict[str, Any]) -> dict[str, Any]:
    """Raise ``ValueError`` unless ``result`` has exactly the agreed keys with sensible types."""
    missing = [k for k in KEYS if k not in result]
    unknown = [k for k in result if k not in KEYS and k not in _OPTIONAL_KEYS]
    if missing or unknown:
        raise ValueError(f"benchmark result {result!r}: missing keys {missing}, unknown keys {unknown}")
    if not isinstance(result["bench"], str) or not result["bench"]:
        raise ValueError(f"benchmark result {result!r}: 'bench' must be a non-empty string")
    if not isinstance(result["metric"], str) or not result["metric"]:
        raise ValueError(f"benchmark result {result!r}: 'metric' must be a non-empty string")
    value = result["value"]
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise ValueError(f"benchmark result {result!r}: 'value' must be a finite number or null")
    if not isinstance(result["unit"], str):
        raise ValueError(f"benchmark result {result!r}: 'unit' must be a string")
    if result["peer"] is not None and not isinstance(result["peer"], str):
        raise ValueError(f"benchmark result {result!r}: 'peer' must be a string or null")
    r = result["ratio"]
    if r is not None and (isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r)):
        raise ValueError(f"benchmark result {result!r}: 'ratio' must be a finite number or null")
    if r is not None and result["peer"] is None:
        raise ValueError(f"benchmark result {result!r}: a ratio needs a named peer")
    if "detail" in result and not isinstance(result["detail"], dict):
        raise ValueError(f"benchmark result {result!r}: 'detail' must be an object")
    json.dumps(result)  # everything must serialise
    return result


def emit(
    bench: str,
    metric: str,
    value: float | None,
    unit: str,
    peer: str | None,
    ratio: float | None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build (and validate) one result line; ``value`` None means "could not be measured"."""
    result: dict[str, Any] = {
        "bench": bench,
        "metric": metric,
        "value": value if value is None or isinstance(value, int) else round(float(value), 3),
        "unit": unit,
        "peer": peer,
        "ratio": ratio,
    }
    if detail:
        result["detail"] = detail
    return validate(result)


# -- context ------------------------------------------------------------------------------------
@dataclass
class BenchContext:
    """What a benchmark gets: the size switch, a scratch directory and the shared broker."""

    quick: bool
    work_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    profile_worker: Path | None = None  # py-spy flame graph of one featurebus worker, if asked
    offline_events: int | None = None  # bench_offline's event count instead of its default size
    _kafka: Any = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def kafka_bootstrap(self) -> str:
        """The run's broker: $FEATUREBUS_KAFKA_BOOTSTRAP if set, else one local broker started once."""
        from featurebus.platform.kafka.broker import LocalKafka, kafka_bootstrap_from_env

        external = kafka_bootstrap_from_env()
        if external is not None:
            if not external.split(",")[0].startswith(("127.0.0.1:", "localhost:")):
                raise SystemExit(f"benchmarks only send traffic to 127.0.0.1; refusing {external}")
            return external
        if self._kafka is None:
            broker = LocalKafka(self.work_dir / "kafka")
            broker.start(timeout_s=120)
            self._kafka = broker
            self.on_close(broker.stop)
            if broker.credentials is not None:  # secured: the platforms' children use its admin too
                from featurebus.platform.kafka.security import export_to_environ

                self.on_close(export_to_environ(broker.credentials.admin))
            log.info("shared Kafka on %s (pid %s) up in %.1fs", broker.bootstrap, broker.pid, broker.started_in_s)
        return str(self._kafka.bootstrap)

    def scratch(self, name: str) -> Path:
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def close(self) -> None:
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception:  # keep stopping the rest
                log.exception("cleanup failed")


# -- the runner ---------------------------------------------------------------------------------
def bench_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(BENCH_DIR)]) if m.name.startswith("bench_"))


def _selected(modules: list[str], only: list[str] | None) -> list[str]:
    if not only:
        return modules
    wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in only}
    unknown = wanted - set(modules)
    if unknown:
        raise SystemExit(f"--only: no benchmark {sorted(unknown)}; there are {modules}")
    return [m for m in modules if m in wanted]


def environment(quick: bool) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return emit(
        "env",
        "cores",
        os.cpu_count() or 0,
        "cores",
        None,
        None,
        {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "mem_gib": mem_gib,
            "featurebus": version("featurebus"),
            "confluent_kafka": version("confluent-kafka"),
            "quick": quick,
            "load_1m": load_1m(),
        },
    )


def _print(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every cleanup below


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="featurebus benchmarks, one JSON line per figure"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only bench_NAME (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, stores)")
    parser.add_argument(
        "--profile-worker",
        type=Path,
        metavar="SVG",
        help="record the first featurebus worker of the throughput run with py-spy",
    )
    parser.add_argument(
        "--offline-events",
        type=int,
        metavar="N",
        help="bench_offline: N events instead of 10M (1M with --quick), e.g. 100000000",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    modules = bench_modules()
    if args.list:
        print("\n".join(m.removeprefix("bench_") for m in modules))
        return 0
    selected = _selected(modules, args.only)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    work_dir = Path(tempfile.mkdtemp(prefix="featurebus-bench-"))
    ctx = BenchContext(
        quick=args.quick, work_dir=work_dir, profile_worker=args.profile_worker, offline_events=args.offline_events
    )
    failed: list[str] = []
    _print(environment(args.quick))
    try:
        for name in selected:
            log.info("== %s%s", name, " (quick)" if args.quick else "")
            started = time.monotonic()
            try:
                module = importlib.import_module(f"bench.{name}")
                results = module.run(ctx)
                for result in results:
                    _print(validate(result))
            except KeyboardInterrupt:
                raise
            except Exception:
                failed.append(name)
                log.error("%s failed:\n%s", name, traceback.format_exc())
            log.info("== %s took %.0fs", name, time.monotonic() - started)
    except KeyboardInterrupt:
        log.warning("interrupted; stopping everything that was started")
        failed.append("interrupted")
    finally:
        ctx.close()
        if args.keep:
            log.info("scratch directory kept: %s", work_dir)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    if failed:
        log.error("failed: %s", ", ".join(failed))
        return 1
    return 0
