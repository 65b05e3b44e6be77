"""``featurebus delete-keys`` and ``featurebus destroy`` through a real control plane process over
the real broker: the receipt printed (text and JSON), bad key files refused, the destroy plan shown
and confirmed, prevent_destroy respected."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from featurebus.platform.access.manage import AccessAdmin
from featurebus.platform.access.records import PrincipalKind
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.registry import KafkaRegistry, apply_workspace
from tests.support.control import wait_answering
from tests.support.specs import spending_workspace

pytestmark = pytest.mark.kafka


def _cli(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FEATUREBUS_CONTROL_URL", "FEATUREBUS_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "featurebus", *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        env={**env, "FEATUREBUS_HOME": str(home)},
    )


@pytest.fixture
def logged_in_home(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Path]:
    """A home logged in, as a fresh instance admin, to a control plane process of its own."""
    access = AccessAdmin(KafkaRegistry(kafka_bootstrap))
    admin = f"root-{uuid.uuid4().hex[:8]}"
    access.create_principal(admin, PrincipalKind.SERVICE_ACCOUNT, admin=True)
    _, key = access.create_key(admin)
    port = free_port_pair()[0]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "control.log", "wb")  # noqa: SIM115 -- closed below, after the process
    control = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "featurebus",
            "control",
            "--port",
            str(port),
            "--bootstrap",
            kafka_bootstrap,
            "--home",
            str(tmp_path / "control-home"),
        ],
        stdout=log,
        stderr=log,
    )
    try:
        wait_answering(f"{url}/health", tmp_path / "control.log")
        home = tmp_path / "home"
        assert _cli(home, "login", "--url", url, "--key", key).returncode == 0
        yield home
    finally:
        control.terminate()
        control.wait(timeout=30)
        log.close()


def _workspace(bootstrap: str, prevent_destroy: bool = False) -> str:
    name = f"cli_del_{uuid.uuid4().hex[:8]}"
    topic = f"payments_{name}"
    ensure_topics(bootstrap, [TopicConfig(topic)])
    spec = spending_workspace(topic=topic, name=name)
    view = dataclasses.replace(spec.stream_feature_views[0], prevent_destroy=prevent_destroy)
    apply_workspace(KafkaRegistry(bootstrap), dataclasses.replace(spec, stream_feature_views=(view,)))
    return name


def test_delete_keys_prints_the_receipt(kafka_bootstrap: str, logged_in_home: Path, tmp_path: Path) -> None:
    workspace = _workspace(kafka_bootstrap)
    keys = tmp_path / "keys.csv"
    keys.write_text("user_id\n007\nu2\n")

    text = _cli(logged_in_home, "delete-keys", "user_spending", "--keys", str(keys), "--workspace", workspace)
    assert text.returncode == 0, text.stderr
    assert f"Deleted 2 entities of {workspace}/user_spending: 0 tombstones" in text.stdout
    assert "NOT deleted source topics" in text.stdout and "include_sources=False" in text.stdout

    as_json = _cli(
        logged_in_home, "delete-keys", "user_spending", "--keys", str(keys), "-w", workspace, "--no-online", "--json"
    )
    assert as_json.returncode == 0, as_json.stderr
    receipt = json.loads(as_json.stdout)
    assert (receipt["entities"], receipt["online"], receipt["offline"]) == (2, False, True)

    (tmp_path / "keys.txt").write_text("user_id\nu1\n")
    wrong_format = _cli(logged_in_home, "delete-keys", "user_spending", "--keys", str(tmp_path / "keys.txt"))
    assert wrong_format.returncode == 1 and "use a .csv or .parquet file" in wrong_format.stderr
    (tmp_path / "wrong.csv").write_text("account\nu1\n")
    wrong_column = _cli(
        logged_in_home, "delete-keys", "user_spending", "--keys", str(tmp_path / "wrong.csv"), "-w", workspace
    )
    assert wrong_column.returncode == 1 and "lacks join key(s) ['user_id']" in wrong_column.stderr


def test_destroy_shows_the_plan_asks_and_respects_prevent_destroy(kafka_bootstrap: str, logged_in_home: Path) -> None:
    workspace = _workspace(kafka_bootstrap)
    declined = _cli(logged_in_home, "destroy", "--workspace", workspace, stdin="n\n")
    assert declined.returncode == 1 and "Nothing was deleted" in declined.stdout
    for name in ("user_spending", "transactions", "spending", "user"):
        assert name in declined.stdout
    assert KafkaRegistry(kafka_bootstrap).get(workspace).stream_feature_views  # type: ignore[union-attr]

    destroyed = _cli(logged_in_home, "destroy", "--workspace", workspace, "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    remaining = KafkaRegistry(kafka_bootstrap).get(workspace)
    assert remaining is not None and remaining.live
    assert (remaining.entities, remaining.stream_sources, remaining.stream_feature_views) == ((), (), ())
    assert remaining.feature_services == ()
    again = _cli(logged_in_home, "destroy", "--workspace", workspace, "--yes")
    assert again.returncode == 0 and "nothing to destroy" in again.stdout

    protected = _workspace(kafka_bootstrap, prevent_destroy=True)
    refused = _cli(logged_in_home, "destroy", "--workspace", protected, "--yes")
    assert refused.returncode == 1 and "prevent_destroy=True" in refused.stderr
    assert KafkaRegistry(kafka_bootstrap).get(protected).stream_feature_views  # type: ignore[union-attr]
