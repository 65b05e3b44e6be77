"""A stream view's batch-history parameters (Tecton's ``feature_start_time``, ``batch_schedule``,
``batch_trigger``, ``manual_trigger_backfill_end_time``, ``max_backfill_interval``,
``incremental_backfills``), validated where the view is defined.

What they mean is ``featurebus.streams.cutover`` (which events the files and the stream each
count) and ``featurebus.platform.jobs.schedule.stream_backfill_ranges`` (how the backfill is cut
into jobs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from featurebus.exceptions import DefinitionError
from featurebus.schemas.kinds import BatchTriggerType
from featurebus.schemas.time import to_epoch_ms

__all__ = ["StreamBackfill", "stream_backfill"]

_DAY_MS = 86_400_000

Fail = Callable[[str, str], DefinitionError]


@dataclass(frozen=True)
class StreamBackfill:
    feature_start_ms: int | None = None
    from_batch: bool = False  # the source's batch_config provides the history before the cut-over
    batch_schedule_ms: int | None = None
    batch_trigger: BatchTriggerType = BatchTriggerType.SCHEDULED
    manual_trigger_backfill_end_ms: int | None = None
    max_backfill_interval_ms: int | None = None
    incremental_backfills: bool = False


def _positive_ms(value: object, what: str, fail: Fail) -> int:
    if not isinstance(value, timedelta):
        raise fail(f"{what} must be a datetime.timedelta, got {value!r}", f"Pass e.g. {what}=timedelta(days=1).")
    ms = int(value / timedelta(milliseconds=1))
    if ms <= 0 or value % timedelta(milliseconds=1):
        raise fail(f"{what} must be a positive whole number of milliseconds, got {value}", f"Use a positive {what}.")
    return ms


def _instant_ms(value: object, what: str, fail: Fail) -> int:
    if not isinstance(value, datetime):
        raise fail(
            f"{what} must be a datetime, got {value!r}", f"Pass e.g. {what}=datetime(2024, 1, 1, tzinfo=timezone.utc)."
        )
    return to_epoch_ms(value)


def stream_backfill(
    *,
    fail: Fail,
    source_name: str,
    has_batch_config: bool,
    aggregation_interval_ms: int | None,
    has_lifetime: bool,
    latest_event_edge: bool,
    feature_start_time: object,
    batch_schedule: object,
    batch_trigger: object,
    manual_trigger_backfill_end_time: object,
    max_backfill_interval: object,
    incremental_backfills: object,
) -> StreamBackfill:
    """The validated parameters; ``fail(problem, fix)`` builds the error naming the view."""
    start_ms = None if feature_start_time is None else _instant_ms(feature_start_time, "feature_start_time", fail)
    trigger = BatchTriggerType.SCHEDULED if batch_trigger is None else batch_trigger
    if not isinstance(trigger, BatchTriggerType):
        raise fail(
            f"batch_trigger must be a BatchTriggerType, got {batch_trigger!r}",
            "Pass batch_trigger=BatchTriggerType.MANUAL, or leave the default (SCHEDULED).",
        )
    if not isinstance(incremental_backfills, bool):
        raise fail("incremental_backfills must be True or False", "Pass incremental_backfills=True.")
    cutting = {
        "batch_schedule": batch_schedule,
        "manual_trigger_backfill_end_time": manual_trigger_backfill_end_time,
        "max_backfill_interval": max_backfill_interval,
        "incremental_backfills": incremental_backfills or None,
        "batch_trigger": batch_trigger,
    }
    given = [name for name, value in cutting.items() if value is not None]
    from_batch = start_ms is not None and has_batch_config and trigger is not BatchTriggerType.NO_BATCH_MATERIALIZATION
    if not from_batch:
        if given and trigger is not BatchTriggerType.NO_BATCH_MATERIALIZATION:
            why = (
                f"source {source_name!r} has no batch_config to backfill from"
                if not has_batch_config
                else "there is no feature_start_time, so no history to backfill"
            )
            raise fail(
                f"{', '.join(given)} cut the backfill of the view's batch history, but {why}",
                "Give the StreamSource batch_config=FileConfig(...) and the view feature_start_time=..., "
                f"or remove {', '.join(given)}.",
            )
        return StreamBackfill(feature_start_ms=start_ms, batch_trigger=trigger)
    if has_lifetime:
        raise fail(
            "lifetime windows cannot be backfilled from batch history yet",
            "Remove feature_start_time (the lifetime window then counts the topic from lifetime_start_time), "
            "or use TimeWindows.",
        )
    if latest_event_edge:
        raise fail(
            "aggregation_leading_edge=LATEST_EVENT_TIME cannot be backfilled from batch history yet",
            "Use the default leading edge (WALL_CLOCK_TIME), or remove feature_start_time.",
        )
    tile_ms = aggregation_interval_ms or 1
    if batch_schedule is None:
        schedule_ms = tile_ms * -(-_DAY_MS // tile_ms)  # about a day, in whole tiles
    else:
        schedule_ms = _positive_ms(batch_schedule, "batch_schedule", fail)
        if schedule_ms % tile_ms:
            raise fail(
                f"batch_schedule ({batch_schedule}) is not a multiple of aggregation_interval "
                f"({timedelta(milliseconds=tile_ms)}): a backfill job would end inside a tile",
                "Make batch_schedule a whole number of aggregation intervals.",
            )
    interval_ms = None
    if max_backfill_interval is not None:
        interval_ms = _positive_ms(max_backfill_interval, "max_backfill_interval", fail)
        if interval_ms % schedule_ms:
            raise fail(
                f"max_backfill_interval ({max_backfill_interval}) is not a multiple of batch_schedule "
                f"({timedelta(milliseconds=schedule_ms)})",
                "Make max_backfill_interval a whole number of batch_schedule periods.",
            )
        if incremental_backfills:
            raise fail(
                "incremental_backfills=True already runs one job per batch_schedule period; "
                "max_backfill_interval would mean nothing",
                "Remove max_backfill_interval or incremental_backfills.",
            )
    manual_end_ms = None
    if manual_trigger_backfill_end_time is not None:
        if trigger is not BatchTriggerType.MANUAL:
            raise fail(
                "manual_trigger_backfill_end_time applies to batch_trigger=BatchTriggerType.MANUAL only",
                "Pass batch_trigger=BatchTriggerType.MANUAL, or remove manual_trigger_backfill_end_time.",
            )
        manual_end_ms = _instant_ms(manual_trigger_backfill_end_time, "manual_trigger_backfill_end_time", fail)
        assert start_ms is not None  # from_batch
        if manual_end_ms <= start_ms:
            raise fail(
                f"manual_trigger_backfill_end_time ({manual_trigger_backfill_end_time}) is not after "
                f"feature_start_time ({feature_start_time})",
                "Pass a manual_trigger_backfill_end_time later than feature_start_time.",
            )
    return StreamBackfill(
        feature_start_ms=start_ms,
        from_batch=True,
        batch_schedule_ms=schedule_ms,
        batch_trigger=trigger,
        manual_trigger_backfill_end_ms=manual_end_ms,
        max_backfill_interval_ms=interval_ms,
        incremental_backfills=incremental_backfills,
    )
