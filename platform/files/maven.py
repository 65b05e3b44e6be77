"""Resolving jars with Maven into a folder: how the local Kafka broker and the Flink connector get
their jars without Docker (``mvn dependency:copy-dependencies`` over a small pom shipped with the
package). One runner for both, so each caller only says what it fetches and how to retry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from featurebus.schemas.errors import FeaturebusError

__all__ = ["copy_dependencies", "output_tail"]

_TAIL_LINES = 25
# Debian's Maven 3.8 emits ANSI resets even with -B; they are stripped from error messages.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def output_tail(output: str) -> str:
    """The last non-empty lines of a tool's output, colour codes removed (for error messages)."""
    lines = [line for line in _ANSI_ESCAPE.sub("", output).splitlines() if line.strip()]
    return "\n".join(lines[-_TAIL_LINES:]) or "(no output)"


def copy_dependencies(
    pom: Path,
    output_dir: Path,
    *,
    what: str,
    retry_command: str,
    error: type[FeaturebusError],
    timeout_s: float,
    alternative: str = "",
) -> None:
    """Copy ``pom``'s runtime dependencies into ``output_dir``; raise ``error`` naming ``what`` was
    being fetched, ``retry_command`` and (if given) ``alternative`` when Maven is missing or fails."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(
            f"Apache Maven (`mvn`) is needed once to download {what} but is not on PATH; install it "
            f"(e.g. `apt-get install maven`) and run `{retry_command}`{alternative}"
        )
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]
    try:
        result = subprocess.run(
            command,
            cwd=pom.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise error(
            f"Maven did not finish resolving {what} within {timeout_s:.0f}s; check network access to Maven "
            f"Central (or your ~/.m2/settings.xml mirror) and rerun `{retry_command}`"
        ) from exc
    if result.returncode != 0 or not any(output_dir.glob("*.jar")):
        raise error(
            f"Maven failed to resolve {what} (exit code {result.returncode}); check network access to Maven "
            f"Central, then rerun `{retry_command}`. Command: {' '.join(command)}\n"
            f"Maven output (tail):\n{output_tail(result.stdout + result.stderr)}"
        )
