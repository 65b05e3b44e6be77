"""The Apache Kafka runtime for machines without Docker: Java plus jars resolved by Maven.

``ensure_kafka_jars()`` turns the dependency list in ``pom.xml`` (shipped next to this module)
into a folder of jars, once, under the featurebus cache folder::

    <cache>/kafka-4.4.0/pom.xml        copy of the packaged pom that was resolved
    <cache>/kafka-4.4.0/libs/*.jar     the broker classpath
    <cache>/kafka-4.4.0/.complete      sha256 of that pom, written only after Maven succeeded

The marker is what makes the cache trustworthy: an interrupted download leaves no marker and is
redone from scratch, and editing ``pom.xml`` changes the hash, so the next call re-resolves.

The second half prepares a node directory before a broker process exists: its
``server.properties``, its formatted KRaft storage, and free loopback ports (used by ``broker``).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from featurebus.platform.files.atomic import atomic_write
from featurebus.platform.files.maven import copy_dependencies, output_tail
from featurebus.platform.kafka.credentials import ADMIN_USER, CONTROLLER_USER, BusCredentials
from featurebus.platform.kafka.security import SCRAM_MECHANISM
from featurebus.schemas.errors import KafkaUnavailableError, StoreFormatError

__all__ = [
    "CACHE_DIR_ENV",
    "KAFKA_VERSION",
    "LOOPBACK_HOST",
    "default_cache_dir",
    "ensure_kafka_jars",
    "find_java",
    "format_storage_once",
    "free_port_pair",
    "port_is_free",
    "server_properties",
]

LOOPBACK_HOST = "127.0.0.1"
"""The only address a local broker binds to or advertises."""

KAFKA_VERSION = "4.4.0"
"""The broker version in ``pom.xml``; it names the cache folder so versions never mix."""

CACHE_DIR_ENV = "FEATUREBUS_CACHE_DIR"

# A cold ~/.m2 needs about a minute on a good link; this only bounds a hung download.
_MAVEN_TIMEOUT_S = 900

_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$FEATUREBUS_CACHE_DIR`` if set, else ``~/.cache/featurebus``."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "featurebus"


def find_java() -> str:
    """Path of the ``java`` executable (``$JAVA_HOME/bin/java`` first, then ``PATH``)."""
    java_home = os.environ.get("JAVA_HOME", "").strip()
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaUnavailableError(
            "Java 17+ is needed to run the local Kafka broker but `java` is not on PATH "
            "(and JAVA_HOME is not set); install a JDK/JRE 17 (e.g. `apt-get install "
            "openjdk-17-jre-headless`) or point FEATUREBUS_KAFKA_BOOTSTRAP at an existing cluster"
        )
    return found


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Return the folder holding the Kafka broker jars, resolving them with Maven on first use.

    Safe to call from several processes at once: resolution happens under a file lock and the
    jars are moved into place only when Maven has succeeded.
    """
    find_java()  # Fail before a minute-long download that could never be used.
    home = (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    pom = resources.files("featurebus.platform.kafka").joinpath("pom.xml").read_bytes()
    digest = hashlib.sha256(pom).hexdigest()
    if _is_complete(home, libs, digest):
        return libs

    home.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(home / ".lock"):
        if _is_complete(home, libs, digest):  # Another process finished while we waited.
            return libs
        (home / ".complete").unlink(missing_ok=True)
        (home / "pom.xml").write_bytes(pom)
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        _log.info("Resolving Apache Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
        _run_maven(home / "pom.xml", staging)
        # Replace wholesale so jars from an older pom never linger on the classpath.
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        atomic_write(home / ".complete", digest)  # never half-written: a torn marker could look "complete"
    return libs


def _is_complete(home: Path, libs: Path, digest: str) -> bool:
    marker = home / ".complete"
    try:
        return marker.read_text().strip() == digest and any(libs.glob("*.jar"))
    except FileNotFoundError:
        return False


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_maven(pom: Path, output_dir: Path) -> None:
    copy_dependencies(
        pom,
        output_dir,
        what=f"the Kafka {KAFKA_VERSION} broker jars",
        retry_command="featurebus kafka fetch",
        error=KafkaUnavailableError,
        timeout_s=_MAVEN_TIMEOUT_S,
        alternative=", or point FEATUREBUS_KAFKA_BOOTSTRAP at an existing cluster",
    )


# Node set-up: everything a broker needs on disk before its process starts. -------------------


def server_properties(
    node_dir: Path, port: int, controller_port: int, credentials: BusCredentials | None = None
) -> str:
    """``server.properties`` for a single-node KRaft (combined mode) development broker: plaintext,
    or with ``credentials`` SASL on every listener and Kafka's ACL authorizer (``_security``)."""
    listener = "SASL_PLAINTEXT" if credentials is not None else "PLAINTEXT"
    controller_protocol = "SASL_PLAINTEXT" if credentials is not None else "PLAINTEXT"
    return f"""\
# Written by featurebus.platform.kafka.LocalKafka: one node that is both controller and broker.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{LOOPBACK_HOST}:{controller_port}
controller.listener.names=CONTROLLER
# Loopback only: a development broker must never be reachable from the network.
listeners={listener}://{LOOPBACK_HOST}:{port},CONTROLLER://{LOOPBACK_HOST}:{controller_port}
advertised.listeners={listener}://{LOOPBACK_HOST}:{port}
inter.broker.listener.name={listener}
listener.security.protocol.map={listener}:{listener},CONTROLLER:{controller_protocol}
{_security(credentials) if credentials is not None else ""}log.dirs={node_dir / "kraft"}
num.partitions=1
# Topics are created deliberately (plan/apply, topic_factory); a typo must not invent one.
auto.create.topics.enable=false
# One node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# The defaults (50 partitions each) make the first consumer group or transaction take seconds.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
share.coordinator.state.topic.num.partitions=4
# Tests start one consumer at a time; the 3 s default only delays the first assignment.
group.initial.rebalance.delay.ms=0
# A killed worker's open transaction holds read_committed readers back until it times out; look
# for timed-out transactions every second, not every 10 s.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
"""


def _security(credentials: BusCredentials) -> str:
    # Clients and the broker itself (inter-broker: the transaction coordinator writes its markers
    # through this listener) authenticate with SCRAM; the admin's credential is formatted into
    # the storage (format_storage_once) so it exists before the metadata log is read. The
    # controller listener uses PLAIN with a static user: KRaft keeps SCRAM credentials in the
    # metadata log the controller itself serves, so SCRAM cannot guard that listener.
    admin, admin_password = ADMIN_USER, credentials.admin_password
    controller, controller_password = CONTROLLER_USER, credentials.controller_password
    return f"""\
sasl.enabled.mechanisms={SCRAM_MECHANISM}
sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
required username="{admin}" password="{admin_password}";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
required username="{controller}" password="{controller_password}" user_{controller}="{controller_password}";
# Every request is authorized against the ACLs `featurebus up` grants per component; only the
# broker's own admin and the controller bypass them, and nothing is allowed without an ACL.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{admin};User:{controller}
allow.everyone.if.no.acl.found=false
"""


_SCRAM_MARKER = "featurebus-scram"  # in kraft/: this storage was formatted with the admin's SCRAM credential


def format_storage_once(java: str, libs: Path, node_dir: Path, credentials: BusCredentials | None = None) -> None:
    """Format ``node_dir/kraft`` with a new cluster id unless an earlier start already did; with
    ``credentials``, the admin's SCRAM credential is formatted into the metadata.

    Skipping an already formatted directory is what lets a persistent data dir restart with its
    topics (``StorageTool format`` refuses to format twice).
    """
    kraft = node_dir / "kraft"
    if (kraft / "meta.properties").exists():
        if credentials is not None and not (kraft / _SCRAM_MARKER).exists():
            raise StoreFormatError(
                f"the Kafka storage in {kraft} was formatted without SASL credentials (by an older featurebus "
                f"or `featurebus kafka start`); this broker runs secured, so delete {node_dir} (its topics go "
                "with it) and start again"
            )
        return
    scram = (
        ["--add-scram", f"{SCRAM_MECHANISM}=[name={ADMIN_USER},password={credentials.admin_password}]"]
        if credentials is not None
        else []
    )
    command = [
        java,
        f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",  # Expanded by the JVM itself; there is no shell here.
        "kafka.tools.StorageTool",
        "format",
        "-t",
        _random_cluster_id(),
        "-c",
        str(node_dir / "server.properties"),
        *scram,
    ]
    result = subprocess.run(
        command,
        cwd=node_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise KafkaUnavailableError(
            f"Formatting Kafka storage in {node_dir / 'kraft'} failed (exit code "
            f"{result.returncode}); delete that directory if it is left over from another "
            f"Kafka version. StorageTool output (tail):\n{output_tail(result.stdout + result.stderr)}"
        )
    if credentials is not None:
        (kraft / _SCRAM_MARKER).touch()


def _random_cluster_id() -> str:
    # Kafka's own format (Uuid.randomUuid): 16 random bytes, URL-safe base64 without padding.
    # Like Kafka, avoid a leading "-": the tool's argument parser would read it as an option.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port_pair() -> tuple[int, int]:
    """Two distinct free ports on 127.0.0.1 (broker, controller)."""
    # Both sockets are bound at once so the kernel hands out two different ports.
    with socket.socket() as first, socket.socket() as second:
        first.bind((LOOPBACK_HOST, 0))
        second.bind((LOOPBACK_HOST, 0))
        return first.getsockname()[1], second.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True if ``port`` on 127.0.0.1 can be bound right now."""
    with socket.socket() as probe:
        # Like Kafka's own server socket: lingering TIME_WAIT connections do not block a bind.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK_HOST, port))
        except OSError:
            return False
    return True
