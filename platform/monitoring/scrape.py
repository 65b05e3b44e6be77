"""Reading a component's ``/metrics``: one HTTP GET, parsed with ``prometheus_client``'s own
text parser into flat samples the evaluator and the history work on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Sample", "ScrapeError", "parse_samples", "scrape"]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted by label name
    value: float

    def label(self, name: str) -> str | None:
        for key, value in self.labels:
            if key == name:
                return value
        return None


class ScrapeError(Exception):
    """A component's ``/metrics`` did not answer with Prometheus text (it counts as unseen)."""


def parse_samples(text: str) -> list[Sample]:
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = float(sample.value)
            samples.append(Sample(sample.name, tuple(sorted(sample.labels.items())), value))
    return samples


def scrape(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> list[Sample]:
    try:
        response = httpx.get(url, headers=dict(headers or {}), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ScrapeError(f"scraping {url} failed: {exc}") from exc
    if response.status_code != 200:
        raise ScrapeError(f"scraping {url} got HTTP {response.status_code}: {response.text[:200]}")
    try:
        return parse_samples(response.text)
    except ValueError as exc:
        raise ScrapeError(f"{url} answered no Prometheus text: {exc}") from exc
