"""`docs/grafana-dashboard.json` charts every metric the dialer exports, and only those,
through its Prometheus datasource variable."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Histogram

from dialer import metrics

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
POOL_GAUGES = {"dialer_pool_leases", "dialer_pool_cap"}


def exported() -> dict[str, set[str]]:
    """Each metric of `dialer.metrics` (and the pool's gauges) -> its exposed sample names."""
    names: dict[str, set[str]] = {name: {name} for name in POOL_GAUGES}
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names[value._name] = {f"{value._name}_total"}
        elif isinstance(value, Histogram):
            names[value._name] = {f"{value._name}_{s}" for s in ("bucket", "count", "sum")}
    return names


def test_the_dashboard_charts_every_metric_through_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    charts = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in charts:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            used |= set(re.findall(r"\bdialer_\w+", target["expr"]))
    exposed = exported()
    known = set().union(*exposed.values())
    assert used <= known, f"charted but not exported: {sorted(used - known)}"
    uncharted = [name for name, samples in exposed.items() if not samples & used]
    assert uncharted == [], f"exported but not charted: {uncharted}"
