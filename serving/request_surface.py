"""The parts of Tecton's get-features request that shape the answer beyond values and the
per-feature metadata ``FeatureServer`` builds: ``metadataOptions.includeSloInfo``,
``includeFeatureDescriptions`` and ``includeFeatureTags``, ``requestOptions`` and
``allowPartialResults`` (camelCase, or snake_case as featurebus also accepts).

Tecton's semantics, and what each means here:

* ``sloInfo`` (``metadata.sloInfo``): ``sloEligible``, ``sloServerTimeSeconds``,
  ``serverTimeSeconds`` (request received to answer built), ``storeMaxLatency`` (the online store
  lookup: every store read and the window merge of the request, in seconds). Tecton marks a
  request ineligible when DynamoDB/Redis limits are exceeded; the online store here is a local
  RocksDB with no such limits, so every request is eligible and ``sloIneligibilityReasons`` is
  omitted, as Tecton omits it for eligible requests.
* ``description`` / ``tags`` per feature: the aggregation's own when it has them, else its
  feature view's (tags merged, the feature's winning).
* ``requestOptions``: cache controls (featurebus has no cache in front of its store, so they
  change nothing), ``ignoreExtraRequestContextFields``, ``latencyBudgetMs`` (a lookup is far
  below Tecton's 100 ms minimum budget, so it is never cut short) and ``coerceNullCountsToZero``
  (counts of entities without data are 0 already). Validated, so a typo is an error, not a no-op.
* ``allowPartialResults``: Tecton returns partial results instead of an error when a request
  exceeds the online store's response size limit; featurebus's store has no such limit, so answers
  are always complete and the flag (validated) never changes one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["FeatureDoc", "RequestSurface", "feature_docs"]

FeatureDoc = tuple[str, dict[str, str]]  # (description, tags) of one served feature

_REQUEST_OPTIONS: dict[str, type] = {
    "readFromCache": bool,
    "writeToCache": bool,
    "ignoreExtraRequestContextFields": bool,
    "coerceNullCountsToZero": bool,
    "latencyBudgetMs": int,
}
_METADATA_FLAGS = (
    "includeNames",
    "includeDataTypes",
    "includeEffectiveTimes",
    "includeServingStatus",
    "includeSloInfo",
    "includeFeatureDescriptions",
    "includeFeatureTags",
)


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _pick(mapping: Mapping[str, Any], camel: str) -> Any:
    value = mapping.get(camel)
    return mapping.get(_snake(camel)) if value is None else value


@dataclass(frozen=True)
class RequestSurface:
    include_slo_info: bool = False
    include_descriptions: bool = False
    include_tags: bool = False
    allow_partial_results: bool = False
    request_options: tuple[tuple[str, Any], ...] = ()

    @property
    def wants_docs(self) -> bool:
        return self.include_descriptions or self.include_tags

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> RequestSurface:
        """From a request's ``params``; every flag must be a boolean, every option known."""
        options = _pick(params, "metadataOptions")
        flags: dict[str, bool] = {}
        if options is not None:
            if not isinstance(options, Mapping):
                raise InvalidRequestError("params.metadataOptions must be an object of booleans")
            for name in _METADATA_FLAGS:
                value = _pick(options, name)
                if value is not None and not isinstance(value, bool):
                    raise InvalidRequestError(f"params.metadataOptions.{name} must be true or false, not {value!r}")
                flags[name] = bool(value)
        partial = _pick(params, "allowPartialResults")
        if partial is not None and not isinstance(partial, bool):
            raise InvalidRequestError(f"params.allowPartialResults must be true or false, not {partial!r}")
        return cls(
            include_slo_info=flags.get("includeSloInfo", False),
            include_descriptions=flags.get("includeFeatureDescriptions", False),
            include_tags=flags.get("includeFeatureTags", False),
            allow_partial_results=bool(partial),
            request_options=_request_options(_pick(params, "requestOptions")),
        )

    def decorate(
        self, answer: dict[str, Any], docs: Sequence[FeatureDoc], received_s: float, lookup_s: float
    ) -> dict[str, Any]:
        """Add what was asked for to ``answer`` (a get-features or get-features-batch answer).
        ``received_s``: ``time.perf_counter()`` when the request arrived; ``lookup_s``: how long
        the store lookup took."""
        metadata = answer.setdefault("metadata", {})
        if self.wants_docs:
            for item, (description, tags) in zip(metadata.get("features", ()), docs, strict=False):
                if self.include_descriptions:
                    item["description"] = description
                if self.include_tags:
                    item["tags"] = tags
        if self.include_slo_info:
            server_s = time.perf_counter() - received_s
            metadata["sloInfo"] = {
                "sloEligible": True,
                "sloServerTimeSeconds": server_s,
                "serverTimeSeconds": server_s,
                "storeMaxLatency": lookup_s,
            }
        return answer


def _request_options(raw: Any) -> tuple[tuple[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InvalidRequestError("params.requestOptions must be an object")
    known = {**{name: name for name in _REQUEST_OPTIONS}, **{_snake(name): name for name in _REQUEST_OPTIONS}}
    chosen = []
    for key, value in raw.items():
        name = known.get(key)
        if name is None:
            raise InvalidRequestError(
                f"params.requestOptions.{key} is not a request option; known: {', '.join(_REQUEST_OPTIONS)}"
            )
        kind = _REQUEST_OPTIONS[name]
        if value is not None and (isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind)):
            raise InvalidRequestError(
                f"params.requestOptions.{key} must be {'true or false' if kind is bool else 'an integer'}, not {value!r}"
            )
        if kind is int and isinstance(value, int) and value < 0:
            raise InvalidRequestError(f"params.requestOptions.{key} must not be negative")
        chosen.append((name, value))
    return tuple(chosen)


def feature_docs(spec: WorkspaceSpec, service: str) -> list[FeatureDoc]:
    """``(description, tags)`` of each feature ``service`` serves, in served order."""
    for candidate in spec.feature_services:
        if candidate.name != service:
            continue
        docs: list[FeatureDoc] = []
        realtime = {v.name: v for v in spec.realtime_feature_views}
        for selection in candidate.selections:
            if selection.view in realtime:  # computed per request: the view's own description and tags
                realtime_view = realtime[selection.view]
                docs.extend((realtime_view.description, dict(realtime_view.tags)) for _ in selection.features)
                continue
            view = spec.view(selection.view)
            aggregations = {a.name: a for a in view.aggregations}
            # Tags arrive on specs with the SDK's metadata support; read them where present.
            view_tags = dict(getattr(view, "tags", ()) or ())
            for name in selection.features:
                aggregation = aggregations.get(name)
                own_description = getattr(aggregation, "description", "") or ""
                own_tags = dict(getattr(aggregation, "tags", ()) or ())
                docs.append((own_description or view.description, {**view_tags, **own_tags}))
        return docs
    return []
