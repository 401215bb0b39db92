"""dashboards/redis-ambassador.json: valid Grafana JSON whose PromQL reads only the metrics
(and labels) the admin listener serves, with the panels the issue lists."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from packaging_helpers import DASHBOARD, METRICS, TARGET_LABELS

PROMQL_FUNCTIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "topk",
        "bottomk",
        "rate",
        "irate",
        "increase",
        "delta",
        "vector",
        "scalar",
        "abs",
        "clamp_min",
        "clamp_max",
        "histogram_quantile",
        "label_values",
        "time",
    ]
)
PROMQL_KEYWORDS = frozenset(
    ["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"]
)
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (everything that is not a function or keyword)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = _GROUPING.sub("", text)  # grouping labels
    text = re.sub(r"label_values\(([^,]+),\s*\w+\s*\)", r"\1", text)  # Grafana's, and its label
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return names - PROMQL_FUNCTIONS - PROMQL_KEYWORDS


def grouping_labels(expr: str) -> set[str]:
    labels = set()
    for match in _GROUPING.finditer(expr):
        labels.update(label.strip() for label in match[2].split(",") if label.strip())
    # label_values(metric, label) names a label too.
    labels.update(re.findall(r"label_values\([^,]+,\s*(\w+)\s*\)", expr))
    return labels


def matcher_labels(expr: str) -> set[str]:
    labels = set()
    for body in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body))
    return labels


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # inside collapsed rows
    return found


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def test_the_checker_finds_names() -> None:
    expr = (
        'topk(10, sum by (command) (rate(redis_ambassador_commands_total{instance=~"$i"}'
        "[$__rate_interval]))) / on(instance) group_left other_metric or vector(0)"
    )
    assert metric_names(expr) == {"redis_ambassador_commands_total", "other_metric"}
    assert metric_names("label_values(some_metric, instance)") == {"some_metric"}
    assert grouping_labels(expr) == {"command", "instance"}
    assert matcher_labels(expr) == {"instance"}


def test_is_a_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "redis-ambassador"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells


def test_every_expression_reads_only_the_ambassador_metrics(dashboard: dict[str, Any]) -> None:
    exprs = expressions(dashboard)
    assert exprs
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= set(METRICS), f"{expr!r} reads {sorted(names - set(METRICS))}"
        allowed = set().union(*(METRICS[n] for n in names)) | TARGET_LABELS
        assert grouping_labels(expr) <= allowed, expr
        assert matcher_labels(expr) <= allowed, expr
        used |= names
    assert used == set(METRICS), f"no panel shows {sorted(set(METRICS) - used)}"


def test_counters_are_read_as_rates(dashboard: dict[str, Any]) -> None:
    for expr in expressions(dashboard):
        if expr.startswith("label_values"):
            continue
        for name in metric_names(expr):
            if name.endswith("_total"):
                assert re.search(rf"(rate|increase)\({name}\b", expr), expr


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= names
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        if panel.get("targets"):
            assert all("$instance" in t["expr"] for t in panel["targets"]), panel["title"]


def test_the_panels_the_issue_lists(dashboard: dict[str, Any]) -> None:
    by_metric: dict[str, list[str]] = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                by_metric.setdefault(name, []).append(panel["title"])
    titles = {p["title"] for p in panels(dashboard)}
    assert "Command rate by command (top 10)" in titles
    (commands,) = [
        t["expr"]
        for p in panels(dashboard)
        if p["title"] == "Command rate by command (top 10)"
        for t in p["targets"]
    ]
    assert commands.startswith("topk(10, sum by (command)")
    breaker = [p for p in panels(dashboard) if "redis_ambassador_breaker_state" in str(p)]
    assert any(p["type"] == "state-timeline" for p in breaker)
    texts = {
        value["text"]
        for p in breaker
        for mapping in p["fieldConfig"]["defaults"].get("mappings", [])
        for value in mapping["options"].values()
    }
    assert texts == {"closed", "half-open", "open"}
    for per_node in ("redis_ambassador_upstream_connections", "redis_ambassador_upstream_pending"):
        exprs = [
            t["expr"]
            for p in panels(dashboard)
            for t in p.get("targets", [])
            if per_node in t["expr"]
        ]
        assert any("by (node)" in e for e in exprs), per_node
