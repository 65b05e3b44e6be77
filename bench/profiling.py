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
            [py_spy, "record", "--pid", str(pid), "--format", "raw", "--function", "--nonblocking",
             "--rate", str(rate_hz), "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        log.info("py-spy (pid %d) records worker pid %d into %s", self._process.pid, pid, out)

    def stop(self, top: int = 10) -> list[tuple[str, float]]:
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
        log.info("worker profile %s, top functions by own time:\n%s", self.out,
                 "\n".join(f"  {share:5.1%}  {name}" for name, share in hottest))
        return hottest


def top_functions(collapsed: Path, top: int = 10) -> list[tuple[str, float]]:
    """Functions by self time (the leaf frame of each sample), as shares of all samples."""
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        own[stack.split(";")[-1]] += samples
    return [(name, n / total) for name, n in own.most_common(top)] if total else []
