"""Live parity: logged served vectors recomputed through the training-set path at the same
request time, feature by feature.

A logged request carries its join keys, request context and request time; as a spine row those
give ``get_features_for_events`` exactly what serving was asked, so the offline value must equal
the served one (floats within 1e-9 relative, as docs/design.md §4 promises) once every event
before the request time is in the offline store. A mismatch is either a real divergence (a
corrupted online tile, a bug on one side) or serving having lagged behind events at request time;
or events that arrived after the request with event times before it (the training path counts
them, serving could not have). The monitor therefore checks only requests older than a settling
delay, and reports the first differing examples so a user can tell which.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurebus.platform.offline.logged_features import TIMESTAMP
from featurebus.platform.training.training_sets import feature_column, get_features_for_events
from featurebus.schemas.specs import WorkspaceSpec

__all__ = ["RELATIVE_TOLERANCE", "parity_report", "values_match"]

RELATIVE_TOLERANCE = 1e-9
_EXAMPLES = 5


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def values_match(served: Any, offline: Any) -> bool:
    """Equal, both missing, or floats within ``RELATIVE_TOLERANCE`` relative (int64 may arrive as
    a string, as served)."""
    if _missing(served) or _missing(offline):
        return _missing(served) and _missing(offline)
    if isinstance(served, str) and not isinstance(offline, str):
        try:
            served = int(served)
        except ValueError:
            return False
    if isinstance(served, list | tuple | np.ndarray) or isinstance(offline, list | tuple | np.ndarray):
        left, right = list(served), list(offline)
        return len(left) == len(right) and all(values_match(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(served, bool | np.bool_) or isinstance(offline, bool | np.bool_):
        return bool(served) == bool(offline)
    if isinstance(served, int | float | np.number) and isinstance(offline, int | float | np.number):
        a, b = float(served), float(offline)
        return a == b or abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b))
    return bool(served == offline)


def _plain(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    return value


def parity_report(spec: WorkspaceSpec, service: str, logged: pd.DataFrame, root: Path) -> dict[str, Any]:
    """Recompute the ``logged`` rows of ``service`` (``read_logged_features``' shape) offline and
    compare: per feature the rows checked, the mismatches, their ratio and the first examples;
    per view the mismatch ratio over all its features' values. Views are named as the service
    serves them (a ``with_name`` reference by its namespace)."""
    selections = spec.service(service).selections
    columns = [(s.namespace, f, feature_column(s.namespace, f)) for s in selections for f in s.features]
    present = [c for c in columns if c[2] in logged.columns]
    spine = logged.drop(
        columns=[c for _, _, c in present] + [c for c in logged.columns if c.endswith("__effective_time")]
    )
    computed = get_features_for_events(spec, service, spine, root, timestamp_key=TIMESTAMP) if len(logged) else spine
    keys = [c for c in spine.columns if c not in (TIMESTAMP, "request_id")]
    features = []
    per_view: dict[str, list[int]] = {}
    for view, feature, column in present:
        served_values = logged[column].tolist()
        offline_values = computed[column].tolist() if len(logged) else []
        mismatches = [
            i for i, (a, b) in enumerate(zip(served_values, offline_values, strict=True)) if not values_match(a, b)
        ]
        examples = [
            {
                "requestId": logged["request_id"].iloc[i],
                "requestTime": logged[TIMESTAMP].iloc[i].isoformat(),
                "keys": {k: _plain(logged[k].iloc[i]) for k in keys},
                "served": _plain(served_values[i]),
                "offline": _plain(offline_values[i]),
            }
            for i in mismatches[:_EXAMPLES]
        ]
        checked = len(served_values)
        counts = per_view.setdefault(view, [0, 0])
        counts[0] += checked
        counts[1] += len(mismatches)
        features.append(
            {
                "featureView": view,
                "feature": feature,
                "checked": checked,
                "mismatches": len(mismatches),
                "mismatchRatio": len(mismatches) / checked if checked else None,
                "examples": examples,
            }
        )
    return {
        "workspace": spec.name,
        "featureService": service,
        "checkedRequests": len(logged),
        "relativeTolerance": RELATIVE_TOLERANCE,
        "views": {
            view: {"checked": checked, "mismatches": bad, "mismatchRatio": bad / checked if checked else None}
            for view, (checked, bad) in per_view.items()
        },
        "features": features,
    }
