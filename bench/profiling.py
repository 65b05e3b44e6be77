"""py-spy on a running featurebus worker, for ``python -m bench --profile-worker OUT``.

The profile is a side product for people reading it (where does a batch spend its time?); it
never feeds a figure. py-spy samples without pausing the process (``--nonblocking``), so the
throughput of the profiled repetition stays close to the others. Output is py-spy's "raw"
format (collapsed stacks, one ``frame;frame;... count`` per line: the input of flamegraph.pl and
speedscope), and a top list of functions is logged when it stops.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["WorkerProfiler", "top_functions"]

log = logging.getLogger(__name__)


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"  # pip install py-spy into the bench venv
    return str(beside) if beside.exists() else shutil.which("py-spy")


class WorkerProfiler:
    def __init__(self, pid: int, out: Path, rate_hz: int = 100) -> None:
        self.out = out
        self._process: subprocess.Popen[bytes] | None = None
        py_spy = _py_spy()
        if py_spy is None:
            log.warning("--profile-worker: py-spy is not installed (pip install py-spy); not profiling")
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--rate",
                str(rate_hz),
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        log.info("py-spy (pid %d) records worker pid %d into %s", self._process.pid, pid, out)

    def stop(self, top: int = 12) -> list[tuple[str, float]]:
        """Stop sampling (py-spy writes its file on SIGINT) and log the hottest functions."""
        process, self._process = self._process, None
        if process is None:
            return []
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if not self.out.exists():
            log.warning("py-spy wrote no profile: %s", err.decode(errors="replace")[-500:])
            return []
        hottest = top_functions(self.out, top)
        log.info("worker profile %s, top functions by own time:\n%s", self.out, _table(hottest))
        log.info(
            "featurebus functions by inclusive time (own + callees):\n%s",
            _table(top_functions(self.out, top, inclusive=True, only="featurebus/")),
        )
        log.info("own time by package:\n%s", _table(by_package(self.out)[:top]))
        return hottest


def _table(rows: list[tuple[str, float]]) -> str:
    return "\n".join(f"  {share:6.1%}  {name}" for name, share in rows)


def _stacks(collapsed: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


# Entry points that sit on every stack of the worker and would top an inclusive list uselessly.
_SCAFFOLD = ("featurebus/__main__.py", "featurebus/cli.py", "featurebus/streams/runtime/worker.py:86)")


def top_functions(collapsed: Path, top: int = 10, inclusive: bool = False, only: str = "") -> list[tuple[str, float]]:
    """Functions by own time (the leaf frame of each sample) or, with ``inclusive``, by the
    samples they are anywhere on the stack of (once per sample), as shares of all samples;
    ``only`` keeps frames whose text contains it (e.g. ``"featurebus/"``)."""
    hits: Counter[str] = Counter()
    total = 0
    for frames, samples in _stacks(collapsed):
        total += samples
        for frame in set(frames) if inclusive else frames[-1:]:
            if only in frame and not frame.endswith(_SCAFFOLD) and not any(s in frame for s in _SCAFFOLD):
                hits[frame] += samples
    return [(name, n / total) for name, n in hits.most_common(top)] if total else []


def by_package(collapsed: Path) -> list[tuple[str, float]]:
    """Own time per top-level package of the leaf frame (``faust``, ``asyncio``, ``featurebus``...)."""
    hits: Counter[str] = Counter()
    total = 0
    for frames, samples in _stacks(collapsed):
        total += samples
        location = frames[-1].rpartition("(")[2]
        hits[location.split("/")[0] if "/" in location else location.split(":")[0]] += samples
    return [(name, n / total) for name, n in hits.most_common()] if total else []
