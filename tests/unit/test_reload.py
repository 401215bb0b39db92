"""SIGHUP's reload plan: which changed keys apply now, which need a restart (sans-IO)."""

from __future__ import annotations

import dataclasses

from redis_ambassador.config import Address, AddressMap, Config, describe_keys, load_config
from redis_ambassador.reload import LIVE_KEYS, Reload, plan_reload

RUNNING = load_config(env={}, overrides={"cluster.seeds": ["10.0.0.1:7000"]})


def changed(**sections: dict[str, object]) -> Config:
    """RUNNING with some keys changed, e.g. ``changed(server={"listen": ...})``."""
    return dataclasses.replace(
        RUNNING,
        **{
            name: dataclasses.replace(getattr(RUNNING, name), **values)
            for name, values in sections.items()
        },
    )


def test_every_live_key_is_a_config_key() -> None:
    keys = {dotted for dotted, _, _ in describe_keys()}
    assert LIVE_KEYS - keys == set(), "reload.LIVE_KEYS names a key that is gone (renamed?)"


def test_the_keys_consumed_once_at_start_are_not_live() -> None:
    for key in (
        "server.listen",
        "cluster.seeds",
        "upstream.pool_size",
        "upstream.connect_timeout",
        "upstream.command_timeout",
        "upstream.health_check_interval",
        "upstream.read_policy",
    ):
        assert key not in LIVE_KEYS


def test_an_unchanged_config_changes_nothing() -> None:
    plan = plan_reload(RUNNING, load_config(env={}, overrides={"cluster.seeds": "10.0.0.1:7000"}))
    assert plan.config == RUNNING
    assert plan.applied == plan.pending == ()
    assert plan.restart_warning() is None


def test_live_keys_are_taken_from_the_new_config() -> None:
    loaded = changed(
        commands={"allow": ("flushdb",)}, server={"idle_timeout": 5.0, "drain_timeout": 0.0}
    )
    plan = plan_reload(RUNNING, loaded)
    assert plan.config == loaded
    assert plan.applied == ("server.drain_timeout", "server.idle_timeout", "commands.allow")
    assert plan.pending == ()
    assert plan.restart_warning() is None


def test_keys_that_need_a_restart_keep_their_running_value_and_are_named_in_one_line() -> None:
    loaded = changed(
        server={"listen": Address("0.0.0.0", 6380)},
        cluster={"seeds": (Address("10.0.0.2", 7000),)},
        upstream={"pool_size": 4, "max_redirects": 3},
    )
    plan = plan_reload(RUNNING, loaded)
    assert plan.applied == ("upstream.max_redirects",)
    assert plan.pending == ("server.listen", "cluster.seeds", "upstream.pool_size")
    assert plan.config == changed(upstream={"max_redirects": 3})
    assert plan.restart_warning() == (
        "config reload: server.listen, cluster.seeds, upstream.pool_size need a restart; "
        "still using server.listen = '127.0.0.1:6379', cluster.seeds = ['10.0.0.1:7000'], "
        "upstream.pool_size = 2"
    )


def test_one_key_that_needs_a_restart_is_named_in_the_singular() -> None:
    plan = plan_reload(RUNNING, changed(upstream={"connect_timeout": 0.5}))
    assert plan.restart_warning() == (
        "config reload: upstream.connect_timeout needs a restart; "
        "still using upstream.connect_timeout = 2.0"
    )


def test_the_discovery_keys_read_at_each_refresh_are_live_the_resolver_s_is_not() -> None:
    mapping = AddressMap(((Address("172.18.0.2", 6379), Address("127.0.0.1", 7000)),))
    loaded = changed(cluster={"refresh_nodes": 5, "address_map": mapping, "resolve_interval": 9.0})
    plan = plan_reload(RUNNING, loaded)
    assert plan.applied == ("cluster.refresh_nodes", "cluster.address_map")
    assert plan.pending == ("cluster.resolve_interval",)
    assert plan.config.cluster.address_map == mapping
    assert plan.config.cluster.resolve_interval == 1.0


def test_a_secret_key_is_masked_in_the_restart_warning() -> None:
    running = changed(server={"requirepass": "S3CRET-requirepass"}, upstream={"password": "pw-9"})
    plan = Reload(running, (), ("server.requirepass", "upstream.password"))
    warning = plan.restart_warning()
    assert warning is not None and "S3CRET" not in warning and "pw-9" not in warning
    assert warning.endswith(
        "still using server.requirepass = '<secret>', upstream.password = '<secret>'"
    )
