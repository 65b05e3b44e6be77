"""What every definition shares: where it was written (for file:line errors), the error helpers,
descriptive metadata, and the refusal of Tecton parameters featurebus does not act on."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from featurebus.exceptions import DefinitionError

__all__ = ["DefinitionSite", "_Definition", "_caller_site", "_fail", "_require_name", "duration_ms", "reject_options"]


@dataclass(frozen=True)
class DefinitionSite:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _caller_site(depth: int = 2) -> DefinitionSite:
    # Recording where a definition was written is the only use of frames here: it lets every
    # validation error point at the user's file:line, as Tecton's do. Nothing depends on it.
    frame = sys._getframe(depth)
    return DefinitionSite(frame.f_code.co_filename, frame.f_lineno)


def _fail(kind: str, name: str, site: DefinitionSite, problem: str, fix: str) -> DefinitionError:
    return DefinitionError(f"{kind} '{name}' ({site}): {problem}. {fix}")


def _require_name(kind: str, name: Any, site: DefinitionSite) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise _fail(
            kind,
            str(name),
            site,
            "the name must be a Python-identifier-like string",
            "Use letters, digits and underscores, e.g. 'user_transactions'.",
        )
    return name


def duration_ms(value: timedelta, what: str, kind: str, name: str, site: DefinitionSite) -> int:
    if not isinstance(value, timedelta):
        raise _fail(
            kind,
            name,
            site,
            f"{what} must be a datetime.timedelta, got {value!r}",
            f"Pass e.g. {what}=timedelta(hours=1).",
        )
    ms = int(value / timedelta(milliseconds=1))
    if ms <= 0 or value % timedelta(milliseconds=1):
        raise _fail(
            kind,
            name,
            site,
            f"{what} must be a positive whole number of milliseconds, got {value}",
            f"Use a positive {what}.",
        )
    return ms


class _Definition:
    """Descriptive metadata every top-level definition keeps (and ``describe`` shows)."""

    site: DefinitionSite
    name: str

    def _keep_metadata(
        self, description: str | None, owner: str | None, tags: dict[str, str] | None, prevent_destroy: bool
    ) -> None:
        kind = type(self).__name__
        if description is not None and not isinstance(description, str):
            raise _fail(
                kind,
                self.name,
                self.site,
                f"description must be a string, got {description!r}",
                "Pass description='what this is for'.",
            )
        if owner is not None and not isinstance(owner, str):
            raise _fail(
                kind, self.name, self.site, f"owner must be a string, got {owner!r}", "Pass owner='team@example.com'."
            )
        if tags is not None and (
            not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        ):
            raise _fail(
                kind,
                self.name,
                self.site,
                f"tags must map strings to strings, got {tags!r}",
                "Pass tags={'team': 'fraud'}.",
            )
        if not isinstance(prevent_destroy, bool):
            raise _fail(
                kind,
                self.name,
                self.site,
                f"prevent_destroy must be True or False, got {prevent_destroy!r}",
                "Pass prevent_destroy=True to protect the object from deletion.",
            )
        self.description = description or ""
        self.owner = owner
        self.tags = dict(tags or {})
        self.prevent_destroy = prevent_destroy


def reject_options(
    kind: str, name: str, site: DefinitionSite, options: dict[str, Any], reasons: dict[str, str]
) -> None:
    """Tecton parameters featurebus does not act on: raise naming the first one that is set.

    ``reasons`` says why per known Tecton parameter; any other keyword is a typo or a parameter
    Tecton does not have either, and the error says so, instead of Python's bare TypeError.
    """
    for option, value in options.items():
        if value is None or value is False or value == {} or value == []:
            continue  # Tecton's defaults: leaving them as they are asks for nothing
        reason = reasons.get(option)
        if reason is None:
            raise _fail(kind, name, site, f"there is no parameter {option!r}", "Check the spelling, or remove it.")
        raise _fail(kind, name, site, f"featurebus does not support {option}= ({reason})", f"Remove {option}=.")
