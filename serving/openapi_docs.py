"""What the OpenAPI document says about each route: Tecton's request bodies and the answers.

The routes parse bodies with orjson rather than pydantic (see ``routes_features.py``), so FastAPI
cannot derive these shapes; they are written out here, once, and attached with
``openapi_extra``. They document the camelCase names Tecton's clients send; every route accepts
the snake_case spellings too. The contract fuzz test (``tests/contract/test_openapi_fuzz.py``)
generates requests from this document, so it has to be accurate.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR",
    "SECURITY_SCHEME",
    "feature_route_doc",
    "ingest_doc",
    "open_route_doc",
    "secured_route_doc",
]

SECURITY_SCHEME = {
    "TectonKey": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Tecton-key <key>` or `Bearer <key>`; keys come from `featurebus api-key create`.",
    }
}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["message", "code"],
    "properties": {
        "message": {"type": "string", "description": "What is wrong and how to fix it."},
        "code": {"type": "string", "examples": ["INVALID_ARGUMENT", "UNAUTHENTICATED", "NOT_FOUND"]},
        "recordErrors": {
            "type": "array",
            "description": "POST /ingest only: every invalid record.",
            "items": {
                "type": "object",
                "properties": {
                    "pushSourceName": {"type": "string"},
                    "recordIndex": {"type": "integer"},
                    "errorMessage": {"type": "string"},
                },
            },
        },
    },
}

_BOOL = {"type": "boolean"}
_JOIN_KEY_VALUE = {"type": ["string", "integer", "null"], "description": "int64 keys may be sent as strings"}

METADATA_OPTIONS: dict[str, Any] = {
    "type": "object",
    "description": "Which metadata to return with the values (all default to false; names are always sent).",
    "properties": {
        name: _BOOL
        for name in (
            "includeNames",
            "includeDataTypes",
            "includeEffectiveTimes",
            "includeServingStatus",
            "includeSloInfo",
            "includeFeatureDescriptions",
            "includeFeatureTags",
        )
    },
}

REQUEST_OPTIONS: dict[str, Any] = {
    "type": "object",
    "description": "Tecton's request-level options. featurebus has no cache in front of its online store, "
    "so the cache options change nothing; coerceNullCountsToZero is what it always does.",
    "properties": {
        "readFromCache": _BOOL,
        "writeToCache": _BOOL,
        "ignoreExtraRequestContextFields": _BOOL,
        "coerceNullCountsToZero": _BOOL,
        "latencyBudgetMs": {"type": "integer", "minimum": 0},
    },
}

_SERVICE_PARAMS: dict[str, Any] = {
    "workspaceName": {"type": "string"},
    "featureServiceName": {"type": "string"},
}

_ROW = {
    "joinKeyMap": {"type": "object", "additionalProperties": _JOIN_KEY_VALUE},
    "requestContextMap": {"type": "object", "description": "Request data for realtime feature views."},
}

_GET_FEATURES_PARAMS: dict[str, Any] = {
    "type": "object",
    "required": ["workspaceName", "featureServiceName"],
    "properties": {
        **_SERVICE_PARAMS,
        **_ROW,
        "metadataOptions": METADATA_OPTIONS,
        "requestOptions": REQUEST_OPTIONS,
        "allowPartialResults": {
            **_BOOL,
            "description": "Accepted for compatibility: featurebus always returns complete results or an error.",
        },
    },
}

_BATCH_PARAMS: dict[str, Any] = {
    "type": "object",
    "required": ["workspaceName", "featureServiceName", "requestData"],
    "properties": {
        **_SERVICE_PARAMS,
        "requestData": {"type": "array", "items": {"type": "object", "required": ["joinKeyMap"], "properties": _ROW}},
        "metadataOptions": METADATA_OPTIONS,
        "requestOptions": REQUEST_OPTIONS,
        "allowPartialResults": _BOOL,
    },
}

_METADATA_PARAMS: dict[str, Any] = {
    "type": "object",
    "required": ["workspaceName", "featureServiceName"],
    "properties": _SERVICE_PARAMS,
}

_FEATURE_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "dataType": {"type": "object", "properties": {"type": {"type": "string"}}},
        "status": {"type": "string", "enum": ["PRESENT", "MISSING_DATA", "UNKNOWN"]},
        "effectiveTime": {"type": "string", "format": "date-time"},
        "description": {"type": "string"},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

_SLO_INFO = {
    "type": "object",
    "properties": {
        "sloEligible": _BOOL,
        "sloIneligibilityReasons": {"type": "array", "items": {"type": "string"}},
        "sloServerTimeSeconds": {"type": "number"},
        "serverTimeSeconds": {"type": "number"},
        "storeMaxLatency": {"type": "number"},
        "storeResponseSizeBytes": {"type": "integer"},
    },
}

_GET_FEATURES_ANSWER = {
    "type": "object",
    "properties": {
        "result": {"type": "object", "properties": {"features": {"type": "array"}}},
        "metadata": {
            "type": "object",
            "properties": {"features": {"type": "array", "items": _FEATURE_METADATA}, "sloInfo": _SLO_INFO},
        },
    },
}

_INGEST_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["workspace_name", "records"],
    "properties": {
        "workspace_name": {"type": "string", "description": "also workspaceName"},
        "dry_run": {**_BOOL, "description": "validate only, write nothing (also dryRun)"},
        "read_after_write": {**_BOOL, "description": "answer once this replica serves the records' effect"},
        "records": {
            "type": "object",
            "description": "Per push source, the records to write: all are validated first; one invalid record "
            "rejects the whole request.",
            "additionalProperties": {
                "type": "array",
                "items": {"type": "object", "required": ["record"], "properties": {"record": {"type": "object"}}},
            },
        },
    },
}

_INGEST_ANSWER = {
    "type": "object",
    "properties": {
        "workspaceName": {"type": "string"},
        "dryRun": _BOOL,
        "ingestMetrics": {
            "type": "object",
            "properties": {
                "featureViewIngestMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "featureViewName": {"type": "string"},
                            "onlineRecordIngestCount": {"type": "string"},
                            "offlineRecordIngestCount": {"type": "string"},
                        },
                    },
                }
            },
        },
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "The request is malformed; `message` says what to change.",
        401: "No API key, or an unknown or revoked one.",
        403: "The key is not allowed this workspace or role.",
        404: "No such workspace or feature service.",
        408: "The request's headers or body did not arrive within the server's time limit.",
        413: "The body, or the number of batch rows, is larger than the server's limit.",
        503: "This serving process has not caught up with the bus since it started (see `Retry-After`), "
        "or Kafka is unreachable.",
    }
    return {str(s): _json(ERROR, reasons[s]) for s in statuses}


def _body(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["params"], "properties": {"params": params}}}
        },
    }


def feature_route_doc(route: str) -> dict[str, Any]:
    """``openapi_extra`` for ``get-features``, ``get-features-batch`` or ``metadata``."""
    params = {"get-features": _GET_FEATURES_PARAMS, "get-features-batch": _BATCH_PARAMS, "metadata": _METADATA_PARAMS}[
        route
    ]
    answer = _GET_FEATURES_ANSWER if route == "get-features" else {"type": "object"}
    return {
        "requestBody": _body(params),
        "security": [{"TectonKey": []}],
        "responses": {
            "200": _json(answer, "The feature values, in Tecton's shape."),
            **_errors(400, 401, 403, 404, 408, 413, 503),
        },
    }


def ingest_doc() -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _INGEST_BODY}}},
        "security": [{"TectonKey": []}],
        "responses": {
            "200": _json(_INGEST_ANSWER, "Every record was validated and (unless a dry run) written."),
            **_errors(400, 401, 403, 404, 408, 413, 503),
        },
    }


def secured_route_doc() -> dict[str, Any]:
    return {"security": [{"TectonKey": []}], "responses": _errors(401, 503)}


def open_route_doc() -> dict[str, Any]:
    return {"security": []}
