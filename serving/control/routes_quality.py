"""Feature monitoring reads: data-quality statistics, drift and live parity (viewer).

Statistics are read from the offline store's ``quality/`` folder; drift and parity reports are
what the monitor loops of the offline materializer process last wrote
(``featurebus.platform.served.reports``). Every path needs a key with the viewer role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from featurebus.platform.access.roles import Action
from featurebus.platform.control.plane import ControlPlane
from featurebus.platform.monitoring.quality import Granularity
from featurebus.platform.monitoring.quality_report import monitored_view, view_statistics
from featurebus.platform.monitoring.quality_store import QualityStore
from featurebus.platform.served.drift_monitor import DriftReference, drift_view_spec, view_drift
from featurebus.platform.served.reports import ReportStore
from featurebus.schemas.errors import InvalidRequestError, NotFoundError
from featurebus.schemas.specs import WorkspaceSpec
from featurebus.schemas.time import now_ms, parse_iso_ms
from featurebus.serving.control.common import CallerCall, api_key_header, errors

__all__ = ["quality_router"]

_LOOKBACK_MS = {Granularity.HOUR: 24 * 3_600_000, Granularity.DAY: 7 * 86_400_000}


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value) if value.lstrip("-").isdigit() else parse_iso_ms(value)
    except ValueError:
        raise InvalidRequestError(f"{name} {value!r} is neither epoch milliseconds nor an ISO 8601 time") from None


def quality_router(plane: ControlPlane, offline_root: Path) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(api_key_header)], tags=["monitoring"])
    statistics = QualityStore(offline_root)
    reports = ReportStore(offline_root)

    def workspace_spec(call: Any, workspace: str) -> WorkspaceSpec:
        plane.guard.check(call, workspace, Action.READ_DEFINITIONS)
        spec = plane.registry.get(workspace)
        if spec is None:
            raise NotFoundError(f"no workspace named {workspace!r}")
        return spec

    @router.get("/workspaces/{workspace}/feature-views/{view}/stats", responses=errors(400, 401, 403, 404))
    def stats(
        workspace: str,
        view: str,
        call: CallerCall,
        feature: Annotated[str | None, Query(max_length=200)] = None,
        since: Annotated[str | None, Query(description="epoch ms or ISO 8601; default 24 h (7 days by day)")] = None,
        until: Annotated[str | None, Query(description="epoch ms or ISO 8601; default now")] = None,
        granularity: Annotated[str, Query(pattern="^(hour|day)$")] = "hour",
    ) -> dict[str, Any]:
        """Per feature and bucket of event time: row count, null rate, min, max, mean, stddev,
        quantiles, distinct estimate and histogram; a bucket without data has ``has_data: false``."""
        view_spec = monitored_view(workspace_spec(call, workspace), view)
        size = Granularity[granularity.upper()]
        end_ms = _time(until, "until") or now_ms()
        start_ms = _time(since, "since")
        rows = view_statistics(
            statistics,
            workspace,
            view_spec,
            feature=feature,
            granularity=size,
            since_ms=end_ms - _LOOKBACK_MS[size] if start_ms is None else start_ms,
            until_ms=end_ms,
        )
        return {"workspace": workspace, "featureView": view, "granularity": granularity, "buckets": rows}

    @router.get("/workspaces/{workspace}/feature-views/{view}/drift", responses=errors(400, 401, 403, 404))
    def drift(
        workspace: str,
        view: str,
        call: CallerCall,
        reference_dataset: Annotated[str | None, Query(max_length=200, description="a saved dataset")] = None,
        reference_start: Annotated[str | None, Query(description="reference window start (ms or ISO 8601)")] = None,
        reference_end: Annotated[str | None, Query(description="reference window end (ms or ISO 8601)")] = None,
        start: Annotated[str | None, Query(description="compared range start (default: 24 buckets before end)")] = None,
        end: Annotated[str | None, Query(description="compared range end (default: the newest logged request)")] = None,
        bucket: Annotated[str, Query(pattern="^(hour|day)$")] = "hour",
    ) -> dict[str, Any]:
        """Drift per feature and bucket of the view's served values (logged features) against a
        reference: computed now when a reference or range is given, else the monitor's last report."""
        spec = workspace_spec(call, workspace)
        drift_view_spec(spec, view)  # 404 naming the views
        asked = (reference_dataset, reference_start, reference_end, start, end)
        if all(value is None for value in asked) and bucket == "hour":
            try:
                return reports.read(workspace, "drift", view)
            except NotFoundError:
                pass  # no round yet: compute it now
        reference = None
        if reference_dataset is not None or reference_start is not None or reference_end is not None:
            reference = DriftReference(
                reference_dataset, _time(reference_start, "reference_start"), _time(reference_end, "reference_end")
            )
        return view_drift(
            offline_root,
            spec,
            view,
            reference=reference,
            start_ms=_time(start, "start"),
            end_ms=_time(end, "end"),
            bucket_ms=Granularity[bucket.upper()].value,
        )

    @router.get("/workspaces/{workspace}/feature-services/{service}/parity", responses=errors(401, 403, 404))
    def parity(workspace: str, service: str, call: CallerCall) -> dict[str, Any]:
        """The live parity monitor's last round: logged served vectors recomputed through the
        training-set path; mismatches per feature (floats within 1e-9 relative) with examples."""
        workspace_spec(call, workspace).service(service)  # 404 naming the services
        return reports.read(workspace, "parity", service)

    return router
