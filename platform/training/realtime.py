"""Realtime feature views in training sets: the spine is the request, row by row or vectorized.

Spine columns supply the request sources' fields (by field name, as Tecton's spines do), each
row's timestamp is the request time, and the stream features come from the point-in-time join.
The views run through the same ``CompiledRealtimeView`` as serving, so the values agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from featurebus.schemas.errors import InvalidRequestError
from featurebus.schemas.kinds import RealtimeInputKind
from featurebus.streams.realtime import RealtimeServicePlan

__all__ = ["realtime_training_columns"]


def realtime_training_columns(
    plan: RealtimeServicePlan,
    spine: pd.DataFrame,
    t_ns: np.ndarray,
    fetched: Mapping[tuple[str, str], Any],
) -> list[tuple[str, str, Any]]:
    """(namespace, feature, column) for every feature the service serves, in its order.

    ``fetched`` holds the point-in-time stream feature columns by (namespace, feature): the view's
    name, or its ``with_name``.
    """
    missing = [name for name, _ in plan.request_fields if name not in spine.columns]
    if missing:
        raise InvalidRequestError(
            f"the spine lacks request context column(s) {missing} that feature service {plan.name!r} "
            f"needs for its realtime feature views; it has {list(spine.columns)}"
        )
    rows = len(spine)
    index = pd.RangeIndex(rows)
    request = spine[[name for name, _ in plan.request_fields]].reset_index(drop=True)
    times = pd.Series(pd.to_datetime(t_ns, unit="ns", utc=True), index=index, name="request_timestamp")
    frames: dict[str, pd.DataFrame] = {}
    for selection in plan.fetch.selections:
        frames[selection.namespace] = pd.DataFrame(
            {f: pd.Series(fetched[(selection.namespace, f)], index=index) for f in selection.features}, index=index
        )
    for view in plan.views:
        inputs = {s.key: request if s.kind == RealtimeInputKind.REQUEST else frames[s.key] for s in view.spec.inputs}
        frames[view.spec.name] = view.evaluate_frame(inputs, times)
    flat = [(s.namespace, f) for s in plan.fetch.selections for f in s.features]
    columns = []
    for output in plan.outputs:
        if output[0] == "fetched":
            view, feature = flat[output[1]]
            columns.append((view, feature, fetched[(view, feature)]))
        else:
            columns.append(
                (
                    output[3],
                    output[2],
                    frames[output[1]][output[2]].to_numpy()
                    if frames[output[1]][output[2]].dtype.kind == "f"
                    else frames[output[1]][output[2]].array,
                )
            )
    return columns
