"""The web UI over the in-memory control plane: sign-in and its cookie, what each role is offered
and refused (through the UI's own endpoints, which call the guarded services), browse/search,
object pages, lineage, keys, and monitoring panels when their routes are absent or failing."""

from __future__ import annotations

import dataclasses
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from featurebus.platform.control.catalog import ObjectKind, catalog_rows, query_rows
from featurebus.platform.control.lineage import lineage_graph
from featurebus.platform.registry import apply_workspace
from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import DefinitionLocationSpec
from featurebus.serving.control.ui.charts import line_chart, points_of
from tests.support.control import ControlFixture, control_fixture
from tests.support.specs import spending_workspace


@pytest.fixture
def fx() -> ControlFixture:
    return control_fixture()


def signed_in(fx: ControlFixture, principal: str) -> TestClient:
    client = TestClient(fx.client.app)
    answer = client.post("/ui/login", data={"key": fx.secrets[principal]}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return client


def test_sign_in_sets_an_http_only_strict_cookie_holding_the_key(fx: ControlFixture) -> None:
    answer = fx.client.post("/ui/login", data={"key": fx.secrets["p-viewer"]}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/workspaces"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie


def test_a_wrong_key_stays_on_sign_in_with_the_apis_message(fx: ControlFixture) -> None:
    answer = TestClient(fx.client.app).post("/ui/login", data={"key": "nope"}, follow_redirects=False)
    assert answer.status_code == 200
    assert "unknown or revoked API key" in answer.text and "featurebus_session" not in answer.headers.get(
        "set-cookie", ""
    )


def test_pages_without_a_session_send_the_browser_to_sign_in(fx: ControlFixture) -> None:
    answer = TestClient(fx.client.app).get("/ui/workspaces", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


def test_a_revoked_key_returns_to_sign_in(fx: ControlFixture) -> None:
    client = signed_in(fx, "p-operator")
    key_id = fx.plane.access.whoami(_call(fx, "p-operator"))["keyId"]
    fx.plane.guard.access.revoke_key(key_id)
    answer = client.get("/ui/browse", follow_redirects=False)
    assert answer.status_code == 303 and "/ui/login" in answer.headers["location"]
    htmx = client.post(f"/ui/w/a/jobs/{fx.job_id}/cancel", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/ui/login")


def _call(fx: ControlFixture, principal: str):  # type: ignore[no-untyped-def]
    from featurebus.platform.control.guard import Call

    return Call(f"Bearer {fx.secrets[principal]}", "test")


def test_a_viewer_is_offered_no_job_controls_and_refused_when_posting_them(fx: ControlFixture) -> None:
    client = signed_in(fx, "p-viewer")
    jobs = client.get("/ui/w/a/jobs")
    assert jobs.status_code == 200 and fx.job_id in jobs.text
    assert "Cancel</button>" not in jobs.text and 'id="trigger"' not in jobs.text
    refused = client.post(f"/ui/w/a/jobs/{fx.job_id}/cancel")
    assert refused.status_code == 403
    assert "operator" in refused.text and "Traceback" not in refused.text
    assert fx.plane.jobs.get(_call(fx, "admin"), "a", fx.job_id)["state"] == "PENDING"
    denied = [r for r in fx.plane.guard.audit.records() if r.action == "jobs.cancel"]
    assert denied and denied[-1].outcome.value == "denied" and denied[-1].principal == "p-viewer"


def test_an_operator_cancels_and_triggers_through_the_ui(fx: ControlFixture) -> None:
    client = signed_in(fx, "p-operator")
    assert "Cancel</button>" in client.get("/ui/w/a/jobs").text
    cancelled = client.post(f"/ui/w/a/jobs/{fx.job_id}/cancel", headers={"HX-Request": "true"})
    assert (
        cancelled.status_code == 200
        and f'id="job-{fx.job_id}"' in cancelled.text
        and "cancel requested" in cancelled.text
    )
    compacted = client.post("/ui/w/a/jobs/compact")
    assert compacted.status_code == 200 and "<td>compact</td>" in compacted.text and "PENDING" in compacted.text
    bad = client.post("/ui/w/a/jobs", data={"view": "user_spending", "start": "yesterday", "end": ""})
    assert bad.status_code == 400 and "start" in bad.text


def test_browse_searches_filters_sorts_and_pages(fx: ControlFixture) -> None:
    client = signed_in(fx, "admin")
    features = client.get("/ui/browse", params={"q": "amount_sum", "kind": "feature", "workspace": "a"})
    assert "user_spending.amount_sum_1h_continuous" in features.text and "2 objects" in features.text
    partial = client.get("/ui/browse", params={"q": "spending"}, headers={"HX-Request": "true"})
    assert "<html" not in partial.text and "/ui/w/a/objects/user_spending" in partial.text
    paged = client.get("/ui/browse", params={"page": 99})
    assert "page 1 of 1" in paged.text  # clamped, not an error
    refused = signed_in(fx, "p-viewer").get("/ui/browse", params={"workspace": "b"})
    assert refused.status_code == 403


def test_query_rows_filters_and_validates() -> None:
    rows = catalog_rows(spending_workspace(name="w"))
    assert {r.kind for r in rows} >= {ObjectKind.ENTITY, ObjectKind.FEATURE, ObjectKind.FEATURE_SERVICE}
    page = query_rows(rows, kind="feature", sort="name", descending=True, per_page=5)
    assert page.total == 6 and page.pages == 2 and len(page.rows) == 5
    assert [r.name for r in page.rows] == sorted((r.name for r in rows if r.kind is ObjectKind.FEATURE), reverse=True)[
        :5
    ]
    with pytest.raises(InvalidRequestError, match="sort must be one of"):
        query_rows(rows, sort="color")
    with pytest.raises(InvalidRequestError, match="kind must be one of"):
        query_rows(rows, kind="gadget")


def test_the_object_page_shows_features_code_history_and_who_applied(fx: ControlFixture) -> None:
    page = signed_in(fx, "p-viewer").get("/ui/w/a/objects/user_spending")
    assert page.status_code == 200
    assert "user_spending.amount_mean_1m_continuous" in page.text and "def passthrough" in page.text
    assert "v1" in page.text and "create" in page.text
    assert "no data yet" in page.text  # data quality and drift routes are not on this branch
    assert signed_in(fx, "p-viewer").get("/ui/w/a/objects/nothing").status_code == 404


def test_the_object_page_shows_where_the_definition_was_written(fx: ControlFixture) -> None:
    client = signed_in(fx, "p-viewer")
    assert "unrecorded location" in client.get("/ui/w/a/objects/user_spending").text  # applied without one
    spec = fx.registry.get("a")
    assert spec is not None
    located = dataclasses.replace(
        spec.stream_feature_views[0], defined_at=DefinitionLocationSpec("features/spending.py", 42)
    )
    apply_workspace(fx.registry, dataclasses.replace(spec, stream_feature_views=(located,)))
    page = client.get("/ui/w/a/objects/user_spending").text
    transformation = page[page.index("<h2>Transformation</h2>") :]
    assert "<code>features/spending.py:42</code>" in transformation.split("</pre>")[0]


def test_lineage_runs_from_topics_through_views_to_services_and_stores(fx: ControlFixture) -> None:
    graph = lineage_graph(spending_workspace(name="w"))
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert ("topic:transactions", "stream_source:transactions") in edges
    assert ("stream_source:transactions", "stream_feature_view:user_spending") in edges
    assert ("stream_feature_view:user_spending", "feature_service:spending") in edges
    assert ("topic:featurebus.w.features.user_spending", "store:online") in edges
    ids = {n["id"] for n in graph["nodes"]}
    assert all(s in ids and t in ids for s, t in edges)
    api = fx.client.get("/v1/workspaces/a/lineage", headers=fx.auth("p-viewer"))
    assert api.status_code == 200 and api.json()["nodes"]
    assert fx.client.get("/v1/workspaces/a/lineage", headers=fx.auth("p-none")).status_code == 403
    assert fx.client.get("/v1/workspaces/a/lineage").status_code == 401


def test_a_key_is_shown_once_and_revoked(fx: ControlFixture) -> None:
    client = signed_in(fx, "admin")
    created = client.post("/ui/access/keys", data={"workspace": "a", "role": "viewer", "description": "ui test"})
    assert created.status_code == 200
    secret = re.search(r'<pre class="secret">([^<]+)</pre>', created.text)
    assert secret is not None
    key_id = re.search(r'class="key-id">([^<]+)<', created.text)
    assert key_id is not None
    listed = client.get("/ui/access").text
    assert key_id.group(1) in listed and secret.group(1) not in listed
    assert client.post(f"/ui/access/keys/{key_id.group(1)}/revoke").status_code == 200
    assert fx.client.get("/v1/whoami", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code == 401
    bad = client.post("/ui/access/keys", data={"workspace": "a", "role": "wizard"})
    assert bad.status_code == 400 and "unknown role" in bad.text


def test_a_viewer_sees_no_access_management(fx: ControlFixture) -> None:
    page = signed_in(fx, "p-viewer").get("/ui/access").text
    assert 'id="create-key"' not in page and 'id="assign-role"' not in page and "<h2>Principals" not in page
    assert signed_in(fx, "p-viewer").get("/ui/access/audit").status_code == 403


def test_monitoring_panels_say_no_data_yet_or_component_down(fx: ControlFixture) -> None:
    client = signed_in(fx, "p-operator")
    assert "no data yet" in client.get("/ui/w/a/alerts").text
    assert client.get("/ui/serving").text.count("no data yet") >= 5
    app: FastAPI = fx.client.app  # type: ignore[assignment]

    @app.get("/v1/workspaces/{workspace}/alerts")
    def broken(workspace: str) -> None:
        raise RuntimeError("evaluator crashed")

    down = client.get("/ui/w/a/alerts")
    assert down.status_code == 200 and "component down" in down.text and "RuntimeError" not in down.text


def test_firing_alerts_are_listed_with_an_ack_for_operators(fx: ControlFixture) -> None:
    app: FastAPI = fx.client.app  # type: ignore[assignment]

    @app.get("/v1/workspaces/{workspace}/alerts")
    def alerts(workspace: str) -> dict[str, object]:
        return {"alerts": [{"rule": "fresh", "state": "firing", "target": "user_spending", "value": 900}]}

    assert 'class="ack"' in signed_in(fx, "p-operator").get("/ui/w/a/alerts").text
    viewer = signed_in(fx, "p-viewer").get("/ui/w/a/alerts").text
    assert "fresh" in viewer and 'class="ack"' not in viewer


def test_try_it_shows_curl_and_says_when_serving_is_down(fx: ControlFixture) -> None:
    client = signed_in(fx, "p-consumer")
    form = client.get("/ui/w/a/try")
    assert 'name="key.user_id"' in form.text
    answer = client.post("/ui/w/a/try", data={"service": "spending", "key.user_id": "u1"})
    assert "curl -X POST" in answer.text and "get-features" in answer.text and "serving is down" in answer.text
    assert client.post("/ui/w/a/try", data={"service": "nope"}).status_code == 404


def test_static_assets_ship_in_the_package_and_are_served(fx: ControlFixture) -> None:
    for name in ("htmx.min.js", "cytoscape.min.js", "app.css", "lineage.js", "LICENSE.htmx", "LICENSE.cytoscape"):
        answer = fx.client.get(f"/ui/static/{name}")
        assert answer.status_code == 200 and len(answer.content) > 100, name
    page = signed_in(fx, "admin").get("/ui/w/a/lineage").text
    assert "http://" not in page and "https://" not in page  # nothing from a CDN


def test_charts_read_metric_history_shapes() -> None:
    assert points_of([[2, 1.0], [1, 3.0]]) == [(1.0, 3.0), (2.0, 1.0)]
    assert points_of({"points": [{"t_ms": 5, "value": 2}]}) == [(5.0, 2.0)]
    assert points_of("garbage") == []
    assert "<polyline" in line_chart([(0, 1), (1, 2)], "p99 <ms>") and "&lt;ms&gt;" in line_chart([(0, 1)], "p99 <ms>")
