"""Batch sources written in Python and the time context batch code receives (Tecton 1.x names).

``@pandas_batch_config`` / ``@pyarrow_batch_config`` turn a function into a batch source's
``batch_config``; it ships in the spec as source code (``CustomBatchConfigSpec``), never pickled.
``FilterContext(start_time, end_time)`` is what such a function, and a batch feature view's
``context=materialization_context()`` argument, receive: the half-open range being computed.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from featurebus.exceptions import DefinitionError
from featurebus.schemas.batch_context import FilterContext, MaterializationContext, materialization_context
from featurebus.schemas.kinds import BatchConfigKind

__all__ = [
    "CustomBatchConfig",
    "FilterContext",
    "MaterializationContext",
    "materialization_context",
    "pandas_batch_config",
    "pyarrow_batch_config",
]


def _site(depth: int) -> str:
    # Only read to say where a definition was written, as every definition error does.
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class CustomBatchConfig:
    """A batch source written in Python; ``kind`` says what its function returns."""

    def __init__(
        self,
        function: Callable[..., Any],
        kind: BatchConfigKind,
        supports_time_filtering: bool,
        data_delay: timedelta,
        site: str,
    ) -> None:
        self.function = function
        self.kind = kind
        self.supports_time_filtering = supports_time_filtering
        self.site = site
        name = getattr(function, "__name__", repr(function))
        if not isinstance(data_delay, timedelta) or data_delay < timedelta(0):
            raise DefinitionError(
                f"{kind}_batch_config '{name}' ({site}): data_delay must be a timedelta >= 0, "
                f"got {data_delay!r}. Pass e.g. data_delay=timedelta(hours=1)."
            )
        self.data_delay_ms = int(data_delay / timedelta(milliseconds=1))
        parameters = list(inspect.signature(function).parameters.values())
        names = [p.name for p in parameters]
        if "secrets" in names:
            raise DefinitionError(
                f"{kind}_batch_config '{name}' ({site}): featurebus has no secret store, so the "
                "function cannot take `secrets`. Remove the parameter and read credentials from "
                "the environment of the process (os.environ) inside the function."
            )
        if len(parameters) > 1:
            raise DefinitionError(
                f"{kind}_batch_config '{name}' ({site}): the function takes {names}; it may take "
                "at most one parameter, the FilterContext. Write def f(filter_context): ..."
            )
        self.filter_parameter = names[0] if names else None
        if supports_time_filtering and self.filter_parameter is None:
            raise DefinitionError(
                f"{kind}_batch_config '{name}' ({site}): supports_time_filtering=True but the "
                "function takes no filter_context. Write def f(filter_context): ... and read "
                "filter_context.start_time / end_time."
            )

    @property
    def name(self) -> str:
        return str(getattr(self.function, "__name__", "batch_config"))


def _decorator(
    kind: BatchConfigKind,
    supports_time_filtering: bool,
    data_delay: timedelta,
    secrets: Any,
    options: dict[str, Any],
    site: str,
) -> Callable[[Callable[..., Any]], CustomBatchConfig]:
    if secrets:
        raise DefinitionError(
            f"{kind}_batch_config ({site}): featurebus has no secret store, so secrets= is not "
            "supported. Remove secrets= and read credentials from the environment (os.environ)."
        )
    for option, value in options.items():
        if value is not None and value is not False:
            raise DefinitionError(
                f"{kind}_batch_config ({site}): featurebus does not support {option}= "
                "(it runs no Spark cluster). Remove it."
            )
    if not isinstance(supports_time_filtering, bool):
        raise DefinitionError(f"{kind}_batch_config ({site}): supports_time_filtering must be True or False.")

    def wrap(function: Callable[..., Any]) -> CustomBatchConfig:
        if not callable(function):
            raise DefinitionError(f"{kind}_batch_config ({site}): decorate a function.")
        return CustomBatchConfig(function, kind, supports_time_filtering, data_delay, site)

    return wrap


def pandas_batch_config(
    *, supports_time_filtering: bool = False, data_delay: timedelta = timedelta(0), secrets: Any = None, **options: Any
) -> Callable[[Callable[..., Any]], CustomBatchConfig]:
    """A batch source whose function returns a pandas DataFrame (Tecton's ``pandas_batch_config``)."""
    return _decorator(BatchConfigKind.PANDAS, supports_time_filtering, data_delay, secrets, options, _site(2))


def pyarrow_batch_config(
    *, supports_time_filtering: bool = False, data_delay: timedelta = timedelta(0), secrets: Any = None, **options: Any
) -> Callable[[Callable[..., Any]], CustomBatchConfig]:
    """A batch source whose function returns a pyarrow Table (Tecton's ``pyarrow_batch_config``)."""
    return _decorator(BatchConfigKind.PYARROW, supports_time_filtering, data_delay, secrets, options, _site(2))
