"""The chaos control API's routes (faults/api.py), the admin listener's token check, and the CLI's
rule flags, sans-IO: requests in, statuses and JSON out."""

from __future__ import annotations

import json

import pytest

from redis_ambassador.cli import _parser
from redis_ambassador.faults import cli as chaos_cli
from redis_ambassador.faults.api import ChaosApi, Deferred
from redis_ambassador.faults.rules import FIELDS, Faults
from redis_ambassador.local.nodes import NodeActionError, parse_slots
from redis_ambassador.operations.listener import AdminRoutes


@pytest.fixture
def api() -> ChaosApi:
    return ChaosApi(Faults(seed=7, clock=lambda: 100.0))


def _body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_add_list_remove_and_clear_rules(api: ChaosApi) -> None:
    status, view = api.handle("POST", "/chaos/rules", _body({"command": "GET", "delay_ms": 5}))
    assert status == 201
    assert view["id"] == "1" and view["command"] == ["get"] and view["hits"] == 0
    api.handle("POST", "/chaos/rules", _body({"key": "user:*", "error": "LOADING wait"}))
    assert api.handle("GET", "/chaos") == (200, {"seed": 7, "rules": api._faults.view()["rules"]})
    status, listed = api.handle("GET", "/chaos/rules")
    assert status == 200 and [r["id"] for r in listed["rules"]] == ["1", "2"]
    status, removed = api.handle("DELETE", "/chaos/rules/1")
    assert status == 200 and removed["removed"] == "1" and removed["rule"]["id"] == "1"
    assert api.handle("DELETE", "/chaos/rules/1") == (404, {"error": "no rule 1"})
    assert api.handle("DELETE", "/chaos/rules") == (200, {"removed": 1})
    assert api.handle("GET", "/chaos/rules") == (200, {"rules": []})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (_body({"command": "GET", "error": "X", "probability": 2}), "probability: "),
        (_body({"command": "GET", "colour": "red", "delay_ms": 1}), "colour: unknown field"),
        (_body({"command": "GET"}), "action: "),
        (_body(["GET"]), "body: must be a JSON object"),
        (b"{not json", "body: not valid JSON"),
        (b"", "body: must be a JSON object"),
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field(
    api: ChaosApi, body: bytes, error: str
) -> None:
    status, answer = api.handle("POST", "/chaos/rules", body)
    assert status == 400
    assert answer["error"].startswith(error)
    assert api.handle("GET", "/chaos/rules") == (200, {"rules": []})


def test_wrong_methods_and_unknown_paths(api: ChaosApi) -> None:
    assert api.handle("PUT", "/chaos/rules", b"")[0] == 405
    assert api.handle("POST", "/chaos", b"")[0] == 405
    assert api.handle("GET", "/chaos/rules/1")[0] == 405
    status, answer = api.handle("GET", "/chaos/wat")
    assert status == 404 and "GET /chaos" in answer["error"]


def test_node_actions_need_a_cluster_the_ambassador_started(api: ChaosApi) -> None:
    for method, path, body in [
        ("POST", "/chaos/nodes/127.0.0.1:7000/kill", b""),
        ("GET", "/chaos/nodes", b""),
        ("POST", "/chaos/slots", _body({"slots": "0-9", "to": "127.0.0.1:7000"})),
    ]:
        status, answer = api.handle(method, path, body)
        assert status == 409 and "redis-ambassador dev" in answer["error"]


def test_slot_ranges_for_migration() -> None:
    assert parse_slots("0-99") == range(0, 100)
    assert parse_slots("42") == parse_slots(42) == range(42, 43)  # as rules take them
    for bad in ("99-0", "0-16384", "a-b", True, None):
        with pytest.raises(NodeActionError) as refused:
            parse_slots(bad)
        assert refused.value.status == 400 and str(refused.value).startswith("slots: ")


def test_the_listener_routes_chaos_only_when_enabled_and_asks_for_the_token() -> None:
    routes = AdminRoutes(token="s3cret")
    status, kind, body = routes.respond("GET", "/chaos", b"")  # type: ignore[misc]
    assert (status, kind) == (404, "application/json")
    assert json.loads(body) == {"error": "chaos is not enabled (serve --chaos)"}
    assert routes.respond("POST", "/metrics", b"")[0] == 405  # type: ignore[index]

    assert routes.authorized("/healthz", None) and routes.authorized("/readyz?x", None)
    assert not routes.authorized("/chaos/rules", None)
    assert not routes.authorized("/metrics", "Bearer wrong")
    assert not routes.authorized("/metrics", "Basic s3cret")
    assert routes.authorized("/chaos/rules", "Bearer s3cret")
    assert routes.authorized("/metrics", "bearer s3cret")
    assert AdminRoutes().authorized("/chaos", None)  # no token configured: open


def test_the_listener_defers_node_actions_to_a_thread() -> None:
    routes = AdminRoutes()
    routes.attach(routes._registry, lambda: None, ChaosApi(Faults(1, lambda: 0.0)))
    status, _kind, body = routes.respond("POST", "/chaos/rules", _body({"delay_ms": 1}))  # type: ignore[misc]
    assert status == 201 and json.loads(body)["id"] == "1"
    assert not isinstance(routes.respond("GET", "/chaos", b""), Deferred)  # no nodes: at once


def test_every_rule_field_is_a_chaos_add_flag() -> None:
    assert {name for name, _ in chaos_cli.RULE_FLAGS} == FIELDS


def test_chaos_add_flags_become_the_rule() -> None:
    args = _parser().parse_args(
        ["chaos", "add", "--command", "GET,set", "--command", "@read", "--error", "LOADING x",
         "--probability", "0.5", "--delay-ms", "20", "--timeout", "--admin", "h:1"]
    )  # fmt: skip
    assert (args.command, args.chaos_command, args.admin) == ("chaos", "add", "h:1")
    assert chaos_cli.rule_spec(args) == {
        "command": ["GET", "set", "@read"],
        "error": "LOADING x",
        "probability": 0.5,
        "delay_ms": 20.0,
        "timeout": True,
    }


def test_chaos_list_describes_each_rule_as_flags() -> None:
    line = chaos_cli.describe_rule(
        {"id": "3", "command": ["get", "set"], "error": "LOADING x", "timeout": True,
         "hits": 2, "matched": 5, "spent": False, "active": True}
    )  # fmt: skip
    assert (
        line == "   3  hits 2/5 matched  active   --command get,set --error 'LOADING x' --timeout"
    )
