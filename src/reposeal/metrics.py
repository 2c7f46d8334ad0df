"""What the services count, in the Prometheus format (prometheus_client).

The repo and source machines serve ``/metrics`` on their public listener (``--public-listen``),
witnesses on their own port; the enclave and the builders open no port, so they write the
same text to a file for node_exporter's textfile collector (``--metrics-file``).

Refusal reasons are free text naming packages and versions; as a label they are cut to
their shape (:func:`reason_kind`), so the number of series stays bounded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # (aiohttp is loaded only by the services that serve metrics)
    from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def reason_kind(reason: str) -> str:
    """A refusal reason's shape: what it is about (up to the first ": ") is dropped, numbers,
    versions and hashes become N, and it is cut to 80 characters."""
    _, sep, rest = reason.partition(": ")
    text = rest if sep and len(rest) > 10 else reason
    text = re.sub(r"[0-9a-f]{12,}…?", "H", text)
    text = re.sub(r"\d[\w.:+~-]*", "N", text)
    return text[:80]


class Metrics:
    """One process's metrics: jobs, decisions, refusals by reason, durations; gauges read
    when scraped come from ``sample`` callbacks."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("reposeal_jobs", "Jobs handled, by kind and outcome.",
                            ["role", "kind", "outcome"], registry=r)  # fmt: skip
        self.decisions = Counter("reposeal_decisions", "Enclave decisions, by kind.",
                                 ["role", "kind", "decision"], registry=r)  # fmt: skip
        self.refusals = Counter("reposeal_refusals", "Refusals, by the shape of the reason.",
                                ["role", "reason"], registry=r)  # fmt: skip
        self.cycle_seconds = Histogram("reposeal_cycle_seconds", "Update cycle rounds.",
                                       ["role"], buckets=_BUCKETS, registry=r)  # fmt: skip
        self.job_seconds = Histogram("reposeal_job_seconds", "Time to handle one job.",
                                     ["role", "kind"], buckets=_BUCKETS, registry=r)  # fmt: skip
        self.up = Gauge("reposeal_start_time_seconds", "When this process started (Unix).",
                        ["role"], registry=r)  # fmt: skip
        self.up.labels(role).set(time.time())

    def job(self, kind: str, outcome: str, seconds: float | None = None) -> None:
        self.jobs.labels(self.role, kind, outcome).inc()
        if seconds is not None:
            self.job_seconds.labels(self.role, kind).observe(seconds)

    def decision(self, kind: str, decision: str, reasons: Iterable[str] = ()) -> None:
        self.decisions.labels(self.role, kind, decision).inc()
        for reason in reasons:
            self.refusals.labels(self.role, reason_kind(reason)).inc()

    def gauges(self, sample: Callable[[], dict[str, dict[tuple[tuple[str, str], ...], float]]],
               helps: dict[str, str]) -> None:  # fmt: skip
        """Gauges whose values ``sample()`` gives at each scrape: {name: {labels: value}}."""
        self.registry.register(_Sampled(sample, helps, self.role))

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def write(self, path: Path) -> None:
        """The textfile collector's file, replaced atomically."""
        from reposeal.fsio import atomic_write

        atomic_write(path, self.text())


def add_route(app: web.Application, metrics: Metrics) -> None:
    """``GET /metrics`` on an aiohttp application (scraped off the event loop)."""
    import asyncio

    from aiohttp import web

    async def scrape(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(metrics.text)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", scrape)


class _Sampled(Collector):
    def __init__(
        self,
        sample: Callable[[], dict[str, dict[tuple[tuple[str, str], ...], float]]],
        helps: dict[str, str],
        role: str,
    ) -> None:
        self.sample, self.helps, self.role = sample, helps, role

    def collect(self) -> Iterable[Metric]:
        values = self.sample()
        for name, help_text in self.helps.items():
            series = values.get(name, {})
            keys = sorted({k for labels in series for k, _ in labels})
            family = GaugeMetricFamily(name, help_text, labels=["role", *keys])
            for labels, value in series.items():
                as_dict = dict(labels)
                family.add_metric([self.role, *(as_dict.get(k, "") for k in keys)], value)
            yield family


def read_hostchecks(folder: Path) -> list[dict[str, Any]]:
    """The host checks' last results, from the files `reposeal hostcheck --metrics-file`
    keeps in ``folder`` (``hostcheck-TOOL.prom``): tool, findings, failed, when."""
    from prometheus_client.parser import text_string_to_metric_families

    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("hostcheck-*.prom")):
        try:
            text = path.read_text()[: 1 << 20]
            values = {s.name: s.value for f in text_string_to_metric_families(text)
                      for s in f.samples}  # fmt: skip
            at = path.stat().st_mtime
        except (OSError, ValueError):
            out.append({"tool": path.stem.removeprefix("hostcheck-"), "unreadable": True})
            continue
        out.append({
            "tool": path.stem.removeprefix("hostcheck-"),
            "findings": int(values.get("reposeal_hostcheck_findings", 0)),
            "failed": bool(values.get("reposeal_hostcheck_failed", 0)),
            "at": at,
        })  # fmt: skip
    return out
