"""``FeatureTable.ingest`` for a workspace read through the control plane: the rows go to the
serving API's ``POST /ingest`` with the login's key (the ``editor`` role), so the SDK needs no
Kafka credentials. ``featurebus.workspace`` writes to the bus itself for ``get_workspace(...,
bootstrap=...)``.

A DataFrame is sent in requests of at most ``BATCH_ROWS`` rows (the server refuses more than
10,000 records or 8 MiB per request). One request is all-or-nothing on the server; for several,
every batch is first sent as a dry run (validated, nothing written), so one bad row anywhere
still rejects the whole frame with nothing written, as the direct path does. Only a failure
while writing (the server or the bus going away between batches) can leave a prefix written; the
error says how many rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx
import orjson

from featurebus.schemas.errors import (
    AuthenticationError,
    FeaturebusError,
    InvalidRequestError,
    KafkaUnavailableError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RecordValidationError,
)
from featurebus.schemas.time import to_epoch_ms

__all__ = ["BATCH_ROWS", "ingest_through_serving"]

# Rows per request: well under the server's 10,000-record limit, and a few MiB of JSON for rows of
# a few hundred bytes (its body limit is 8 MiB).
BATCH_ROWS = 5_000
_TIMEOUT_S = 60.0

_ERRORS: dict[int, type[FeaturebusError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    503: KafkaUnavailableError,
}


def _json_value(value: Any) -> Any:
    """What orjson does not encode itself: pandas Timestamps (a datetime subclass) as epoch
    milliseconds, exactly as the direct path reads them; numpy arrays and scalars as Python."""
    if isinstance(value, datetime):
        return to_epoch_ms(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a value a record can hold")


class _ServingIngest:
    def __init__(self, url: str, key: str, workspace: str, table: str) -> None:
        self.url = url
        self._workspace = workspace
        self._table = table
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(_TIMEOUT_S, connect=3.0),
        )

    def close(self) -> None:
        self._client.close()

    def send(self, items: Sequence[dict[str, Any]], first_row: int, dry_run: bool) -> dict[str, Any]:
        """One request; a 400 naming records becomes ``RecordValidationError`` with the server's
        message and each record's index in the whole DataFrame."""
        body = {"workspace_name": self._workspace, "dry_run": dry_run, "records": {self._table: list(items)}}
        try:
            content = orjson.dumps(
                body, default=_json_value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME
            )
        except TypeError as exc:
            raise InvalidRequestError(f"a row of the DataFrame cannot be sent: {exc}") from None
        try:
            response = self._client.post("/ingest", content=content)
        except httpx.TransportError as exc:
            raise FeaturebusError(
                f"the serving API at {self.url} did not answer ({type(exc).__name__}: {exc}); start it "
                "(`featurebus up` or `featurebus serve`) or log in with the right one: `featurebus login --url "
                "CONTROL_URL --serving-url SERVING_URL`"
            ) from None
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code == 200 and isinstance(document, dict):
            return document
        answer = document if isinstance(document, dict) else {}
        message = str(answer.get("message") or response.text or f"HTTP {response.status_code}")
        if response.status_code == 400 and isinstance(answer.get("recordErrors"), list):
            errors = [
                {**e, "recordIndex": e["recordIndex"] + first_row} if isinstance(e.get("recordIndex"), int) else e
                for e in answer["recordErrors"]
                if isinstance(e, dict)
            ]
            raise RecordValidationError(message, record_errors=errors)
        if response.status_code == 503 and "retry-after" in response.headers:  # a replica still catching up
            raise NotReadyError(
                f"the serving API at {self.url} is not ready yet: {message}; ingest again shortly",
                int(response.headers["retry-after"]),
            )
        error = _ERRORS.get(response.status_code, FeaturebusError)
        raise error(f"the serving API at {self.url} refused the rows ({response.status_code}): {message}")


def ingest_through_serving(
    url: str, key: str, workspace: str, table: str, items: Sequence[dict[str, Any]], batch_rows: int | None = None
) -> dict[str, Any]:
    """Send the table's ingestion items (``{"record": {...}}``, from ``table_records``) and return
    the server's answer, with the ingest counts summed over the batches (``batch_rows``: rows per
    request, ``BATCH_ROWS`` when not given)."""
    batch_rows = batch_rows or BATCH_ROWS
    batches = [(start, items[start : start + batch_rows]) for start in range(0, max(1, len(items)), batch_rows)]
    client = _ServingIngest(url, key, workspace, table)
    try:
        if len(batches) > 1:
            _validate_all(client, batches, len(items))
        answers: list[dict[str, Any]] = []
        for start, batch in batches:
            try:
                answers.append(client.send(batch, start, dry_run=False))
            except FeaturebusError as exc:
                if not answers:
                    raise
                raise type(exc)(f"{exc} (rows [0, {start}) of {len(items)} were written before)") from None
    finally:
        client.close()
    return _summed(answers)


def _validate_all(client: _ServingIngest, batches: Sequence[tuple[int, Sequence[dict[str, Any]]]], total: int) -> None:
    """A dry run of every batch, collecting the bad rows of all of them before any is written."""
    messages: list[str] = []
    errors: list[dict[str, object]] = []
    for start, batch in batches:
        try:
            client.send(batch, start, dry_run=True)
        except RecordValidationError as exc:
            messages.append(f"rows [{start}, {start + len(batch)}): {exc}")
            errors.extend(exc.record_errors)
    if errors:
        raise RecordValidationError(
            f"{len(errors)} of {total} rows are invalid; nothing was written ({'; '.join(messages)})", errors
        )


def _summed(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One answer for the whole DataFrame: the first batch's, with each view's counts (int64 as
    strings, as the server sends them) added up over the batches."""
    first = answers[0]
    totals: dict[str, dict[str, int]] = {}
    for answer in answers:
        for metric in answer.get("ingestMetrics", {}).get("featureViewIngestMetrics", []):
            counts = totals.setdefault(metric["featureViewName"], {})
            for name, value in metric.items():
                if name != "featureViewName":
                    counts[name] = counts.get(name, 0) + int(value)
    metrics = [{"featureViewName": view, **{k: str(v) for k, v in counts.items()}} for view, counts in totals.items()]
    return {**first, "ingestMetrics": {**first.get("ingestMetrics", {}), "featureViewIngestMetrics": metrics}}
