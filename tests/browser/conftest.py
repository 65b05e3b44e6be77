"""A real headless Chromium (Debian's ``chromium`` package, driven by Playwright's Python API)
against ``featurebus up`` with the fraud example applied to the live workspace ``fraud`` and the
ads example to a second live workspace ``ads``. Every test saves a screenshot into
``.screenshots/`` (git-ignored); ``pytest tests/browser`` regenerates them.

No browser is downloaded: where ``/usr/bin/chromium`` (Debian's ``chromium``) or the
``playwright`` Python package is missing, the tests are skipped with a message naming it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurebus.platform.config import control_login
from featurebus.platform.kafka.admin import TopicConfig, ensure_topics
from featurebus.platform.kafka.runtime import free_port_pair
from featurebus.platform.local.generator import produce_events
from featurebus.platform.local.up import LocalPlatform
from featurebus.platform.registry import KafkaRegistry
from featurebus.platform.workspaces import create_workspace
from featurebus.schemas.time import format_iso_ms

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / ".screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.kafka)


@dataclass
class Ui:
    platform: LocalPlatform
    admin_key: str
    events_at_ms: int

    @property
    def url(self) -> str:
        return self.platform.control_url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30.0, **kwargs)


def _cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "featurebus", *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"featurebus {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


# Package scope: the platform stops after the browser tests, before the other suites run (they
# expect nothing of theirs on the default ports).
@pytest.fixture(scope="package")
def ui(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    home = tmp_path_factory.mktemp("ui-home")
    ensure_topics(kafka_bootstrap, [TopicConfig("transactions", partitions=1)])
    # evaluate alerts every 2 s (default 15) so the firing-alert test sees its rule fire quickly
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FEATUREBUS_MONITOR_INTERVAL_S", "2")
        yield from _up(home, kafka_bootstrap)


def _up(home: Path, kafka_bootstrap: str) -> Iterator[Ui]:
    # A free control port, never the default 8090: CLI tests check what a command says when no
    # control plane answers there.
    control_port = free_port_pair()[0]
    with LocalPlatform(home, "fraud", bootstrap=kafka_bootstrap, control_port=control_port) as platform:
        _cli(
            "apply", "--repo", str(ROOT / "examples" / "fraud"), "--workspace", "fraud", "--bootstrap", kafka_bootstrap
        )
        create_workspace(KafkaRegistry(kafka_bootstrap), "ads", live=True)
        _cli("apply", "--repo", str(ROOT / "examples" / "ads"), "--workspace", "ads", "--bootstrap", kafka_bootstrap)
        now_ms = int(time.time() * 1000)
        events = [
            {
                "transaction_id": f"ui-{i}",
                "user_id": "user_1",
                "merchant_id": "merchant_1",
                "amount": 10.0,
                "is_online": True,
                "timestamp": format_iso_ms(now_ms - 60_000 + i),
            }
            for i in range(5)
        ]
        assert produce_events(platform.bootstrap, "transactions", events) == 5
        key = platform.admin_secret or control_login(home)[1]
        assert key, "featurebus up stored no admin key"
        _wait_served(platform, key)
        yield Ui(platform, key, now_ms)


def _wait_served(platform: LocalPlatform, key: str, timeout_s: float = 180.0) -> None:
    """Until serving answers the produced events (the worker folds them; slow on a loaded machine)."""
    body = {
        "params": {"workspaceName": "fraud", "featureServiceName": "user_spending", "joinKeyMap": {"user_id": "user_1"}}
    }
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        platform.check()
        try:
            answer = httpx.post(
                f"{platform.serving_url}/api/v1/feature-service/get-features",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=10.0,
            )
            last = answer.text
            if answer.status_code == 200 and 50.0 in answer.json()["result"]["features"]:
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(f"serving never answered the produced events: {last}\n{platform.log_tail('worker')}")


# Package scope too: Playwright's sync API keeps an event loop on the main thread while it runs,
# and later suites call asyncio.run().
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "BROWSER TESTS SKIPPED: Debian's 'chromium' package is not installed (/usr/bin/chromium); "
            "`make bootstrap` installs it as root (apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("BROWSER TESTS SKIPPED: the 'playwright' Python package is missing: pip install -e '.[dev]'")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, ui: Ui, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context signed in as the admin; its screenshot is saved after the test."""
    context = new_context(browser)
    tab = context.new_page()
    sign_in(tab, ui.url, ui.admin_key)
    try:
        yield tab
    finally:
        SCREENSHOTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
        context.close()


def new_context(browser: Any) -> Any:
    """A browser context whose waits allow for a shared, loaded machine (2 cores, many processes)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(90_000)
    return context


def sign_in(tab: Any, url: str, key: str) -> None:
    tab.goto(f"{url}/ui/login")
    tab.fill("#key", key)
    tab.click("button[type=submit]")
    tab.wait_for_url("**/ui/workspaces")
