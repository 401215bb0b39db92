"""Command line: ``redis-ambassador serve`` in front of a cluster, ``dev`` with a local one,
``config check`` to print the effective config and where each value came from."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from redis_ambassador import __version__, logs
from redis_ambassador.ambassador import ListenError, Running, serve
from redis_ambassador.config import (
    BACKENDS,
    DEV_DEFAULTS,
    Address,
    Config,
    ConfigError,
    Setting,
    explain_config,
    load_config,
)
from redis_ambassador.faults import cli as chaos_cli
from redis_ambassador.faults.control import NodeControl
from redis_ambassador.rotation import Secrets
from redis_ambassador.topology.slotmap import ClusterUnreachable

log = logging.getLogger("redis_ambassador")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redis-ambassador",
        description="One plain Redis endpoint in front of a whole Redis Cluster.",
    )
    parser.add_argument("--version", action="version", version=f"redis-ambassador {__version__}")
    _add_log_flags(parser, argparse.SUPPRESS)  # before the subcommand, or after it
    parser.set_defaults(log_level=None, log_format=None)
    sub = parser.add_subparsers(dest="command", required=True)

    serve_cmd = sub.add_parser("serve", help="serve in front of an existing Redis Cluster")
    _add_serve_flags(serve_cmd)

    config_cmd = sub.add_parser("config", help="inspect the configuration")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check",
        help="print the effective config of `serve` with these flags, and where each value "
        "came from (exit 2 on a config error)",
    )
    _add_serve_flags(check)

    dev = sub.add_parser(
        "dev", help="start a local Redis (a 3+3 cluster by default) and serve in front of it"
    )
    dev.add_argument("--port", type=int, default=6379, help="port to serve on (default 6379)")
    dev.add_argument("--host", default="127.0.0.1", help="address to serve on")
    dev.add_argument(
        "--topology",
        choices=BACKENDS,
        default="cluster",
        help="cluster (default), standalone (one redis-server) or sentinel (a master, its "
        "replicas and 3 sentinels)",
    )
    dev.add_argument("--masters", type=int, default=3, help="cluster masters")
    dev.add_argument(
        "--replicas", type=int, default=1, help="replicas per master (cluster and sentinel)"
    )
    _add_tuning_flags(dev)
    chaos_cli.add_parser(sub)
    return parser


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config file")
    parser.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:6379")
    parser.add_argument(
        "--seed",
        metavar="HOST:PORT",
        action="append",
        help="a cluster node, the standalone server, or a sentinel (repeatable)",
    )
    parser.add_argument("--backend", choices=BACKENDS, help="what the seeds are (default cluster)")
    parser.add_argument(
        "--sentinel-master", metavar="NAME", help="the sentinels' name for the master"
    )
    _add_tls_flags(parser)
    _add_tuning_flags(parser)


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group("TLS (see config.example.toml)")
    tls.add_argument(
        "--tls", action="store_const", const=True, help="connect to the nodes over TLS"
    )
    tls.add_argument("--tls-ca-file", metavar="FILE", help="CAs the nodes' certificates chain to")
    tls.add_argument("--tls-cert-file", metavar="FILE", help="client certificate for the nodes")
    tls.add_argument("--tls-key-file", metavar="FILE", help="its private key")
    tls.add_argument("--tls-server-name", metavar="NAME", help="name nodes' certificates carry")
    tls.add_argument(
        "--tls-no-check-hostname",
        dest="tls_check_hostname",
        action="store_const",
        const=False,
        help="check nodes' certificate chains, not the names in them",
    )
    tls.add_argument(
        "--tls-listen", metavar="HOST:PORT|off", help="TLS listener for clients (default off)"
    )
    tls.add_argument("--tls-listen-cert-file", metavar="FILE", help="its certificate")
    tls.add_argument("--tls-listen-key-file", metavar="FILE", help="its private key")
    tls.add_argument(
        "--tls-listen-ca-file",
        metavar="FILE",
        help="mutual TLS: CAs clients' certificates chain to",
    )


def _add_log_flags(parser: argparse.ArgumentParser, default: object) -> None:
    # SUPPRESS as a subcommand's default: a flag given before the subcommand is not reset.
    parser.add_argument(
        "--log-level", metavar="LEVEL", default=default, help="debug, info, warning or error"
    )
    parser.add_argument(
        "--log-format", choices=logs.FORMATS, default=default, help="plain (default) or json"
    )


def _add_tuning_flags(parser: argparse.ArgumentParser) -> None:
    _add_log_flags(parser, argparse.SUPPRESS)
    parser.add_argument("--pool-size", type=int, help="pipelined connections per node")
    parser.add_argument("--connect-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--command-timeout", type=float, metavar="SECONDS")
    parser.add_argument(
        "--admin", metavar="HOST:PORT|off", help="admin HTTP listener (default 127.0.0.1:9090)"
    )
    parser.add_argument(
        "--read-policy",
        choices=("master", "prefer-replica", "replica", "any"),
        help="where read-only commands go (default master)",
    )
    parser.add_argument(
        "--chaos",
        action="store_true",
        default=None,
        help="accept fault rules (admin API, CLI, config); always on in dev",
    )
    parser.add_argument(
        "--chaos-seed", type=int, metavar="N", help="seed for the fault rules' random draws"
    )
    parser.add_argument(
        "--chaos-in-band",
        action="store_true",
        default=None,
        help="also accept the CHAOS command on the Redis port",
    )


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "server.listen": getattr(args, "listen", None),
        "cluster.seeds": getattr(args, "seed", None),
        "cluster.backend": getattr(args, "backend", None),
        "cluster.sentinel_master": getattr(args, "sentinel_master", None),
        "upstream.pool_size": args.pool_size,
        "upstream.connect_timeout": args.connect_timeout,
        "upstream.command_timeout": args.command_timeout,
        "upstream.read_policy": args.read_policy,
        "server.admin": args.admin,
        "server.log_level": args.log_level,
        "server.log_format": args.log_format,
        "chaos.enabled": args.chaos,
        "chaos.seed": args.chaos_seed,
        "chaos.in_band": args.chaos_in_band,
        **{dotted: getattr(args, dotted.partition(".")[2], None) for dotted in _TLS_KEYS},
    }


# Set by the `serve` flags of the same names (--tls-ca-file: upstream.tls_ca_file).
_TLS_KEYS = (
    "upstream.tls",
    "upstream.tls_ca_file",
    "upstream.tls_cert_file",
    "upstream.tls_key_file",
    "upstream.tls_server_name",
    "upstream.tls_check_hostname",
    "server.tls_listen",
    "server.tls_listen_cert_file",
    "server.tls_listen_key_file",
    "server.tls_listen_ca_file",
)


def _flag_names() -> dict[str, str]:
    """Each key ``_overrides`` sets, mapped to the `serve` flag that sets it (``--pool-size``):
    read from ``_overrides`` itself, given every flag's name as its value."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_serve_flags(parser)
    names = argparse.Namespace()
    for action in parser._actions:
        if action.option_strings:
            setattr(names, action.dest, max(action.option_strings, key=len))
    return {key: flag for key, flag in _overrides(names).items() if isinstance(flag, str)}


def _where(setting: Setting, flags: dict[str, str]) -> str:
    if setting.origin == "flag":
        return f"flag {flags.get(setting.key, setting.source)}"
    if setting.origin in ("file", "env"):
        return f"{setting.origin} {setting.source}"
    return setting.origin


def _config_check(args: argparse.Namespace) -> int:
    """Print one line per key, ``key = value  # where it came from``, as TOML (it reads back as
    a config file); a secret key's value is masked."""
    config, settings = explain_config(args.config, overrides=_overrides(args))
    _require_seeds(config)
    Secrets.load(config)  # a password or certificate file that cannot be read is a config error
    flags = _flag_names()
    lines = [(f"{s.key} = {s.shown}", _where(s, flags)) for s in settings]
    width = max((len(line) for line, _ in lines if len(line) <= 60), default=0)
    for line, where in lines:
        print(f"{line.ljust(width)}  # {where}")
    return 0


def _require_seeds(config: Config) -> None:
    if not config.cluster.seeds:
        raise ConfigError(
            "cluster.seeds is empty: give --seed HOST:PORT, "
            "REDIS_AMBASSADOR_SEEDS (or REDIS_MASTER_HOST, TARGET_HOST) or [cluster] seeds "
            "in the config file"
        )


def _configure_logging(config: Config) -> None:
    logs.configure(config.server.log_level, config.server.log_format)


def _run(
    config: Config,
    on_ready: Callable[[Address], None],
    reload: Callable[[], Config],
    nodes: NodeControl | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT has drained the ambassador (a second one cuts the drain
    short); SIGHUP applies ``reload()``'s config. ``nodes``: the cluster this process started."""

    async def main() -> None:
        running: Running | None = None
        reload_wanted = False  # a SIGHUP during start-up, applied once serving

        def apply_reload(running: Running) -> None:
            try:
                loaded = reload()
            except ConfigError as exc:
                log.error("config reload failed: %s; still using the running config", exc)
                return
            running.reload(loaded)
            _configure_logging(running.config)  # server.log_level and log_format are live

        async with anyio.create_task_group() as tg:

            async def on_signals() -> None:
                nonlocal reload_wanted
                with anyio.open_signal_receiver(
                    signal.SIGTERM, signal.SIGINT, signal.SIGHUP
                ) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if signum == signal.SIGHUP:
                            if running is None:
                                log.info("SIGHUP during start-up: reloading once serving")
                                reload_wanted = True
                            else:
                                apply_reload(running)
                        elif running is None:
                            log.info("%s received during start-up, stopping", name)
                            tg.cancel_scope.cancel()
                        else:
                            running.stop(name)

            async def serve_then_stop(*, task_status: TaskStatus[Running]) -> None:
                await serve(config, on_ready, nodes=nodes, task_status=task_status)
                tg.cancel_scope.cancel()  # drained: stop listening for signals

            tg.start_soon(on_signals)
            running = await tg.start(serve_then_stop)
            if reload_wanted:
                apply_reload(running)

    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:
        options = {}
    try:
        anyio.run(main, backend="asyncio", backend_options=options)
    except BaseExceptionGroup as group:
        # A start-up failure surfaces through the task group: report it plainly.
        while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
            group = group.exceptions[0]
        raise group from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    json_logs = False
    try:
        if args.command == "config":
            return _config_check(args)
        if args.command == "chaos":
            return chaos_cli.run(args)
        if args.command == "serve":
            config = load_config(args.config, overrides=_overrides(args))
            _require_seeds(config)
            _configure_logging(config)
            json_logs = config.server.log_format == "json"
            _run(
                config,
                lambda a: print(f"redis-ambassador serving on {a}", flush=True),
                lambda: load_config(args.config, overrides=_overrides(args)),
            )
        else:
            return _dev(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ListenError, ClusterUnreachable) as exc:
        if json_logs:  # stderr stays all JSON lines
            log.error("%s", exc)
        else:
            print(f"redis-ambassador: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


# dev's own flags' limits (least, greatest); its other flags are config keys, checked as such.
_DEV_LIMITS = {"--port": (1, 65535), "--masters": (1, None), "--replicas": (0, None)}


def _check_dev_flags(args: argparse.Namespace) -> None:
    """Refuse a bad dev flag in one line naming it, as `serve` refuses a bad setting."""
    for flag, (least, greatest) in _DEV_LIMITS.items():
        value = getattr(args, flag[2:])
        if value < least or (greatest is not None and value > greatest):
            need = f">= {least}" if greatest is None else f"from {least} to {greatest}"
            raise ConfigError(f"{flag} = {value} (from command line): must be an integer {need}")
    if not args.host.strip():
        raise ConfigError(
            f"--host = {args.host!r} (from command line): must be a host name or IP address"
        )


def _dev(args: argparse.Namespace) -> int:
    from redis_ambassador.local.cluster import LocalCluster, RedisServerNotFound
    from redis_ambassador.local.nodes import NodeActions
    from redis_ambassador.local.servers import LocalSentinelSet, LocalStandalone

    _check_dev_flags(args)
    overrides = _overrides(args)
    overrides["server.listen"] = str(Address(args.host, args.port))
    overrides["cluster.backend"] = args.topology
    # Before starting any redis-server: a config error stops here, and logging is set up.
    _configure_logging(load_config(None, overrides=overrides, defaults=DEV_DEFAULTS))
    local: LocalCluster | LocalStandalone | LocalSentinelSet
    if args.topology == "standalone":
        local = LocalStandalone()
    elif args.topology == "sentinel":
        local = LocalSentinelSet(replicas=args.replicas)
        overrides["cluster.sentinel_master"] = local.name
    else:
        local = LocalCluster(masters=args.masters, replicas_per_master=args.replicas)
    try:
        with local:
            overrides["cluster.seeds"] = list(local.seeds)

            # Servers of its own, for development: FLUSHALL, CONFIG SET, DEBUG allowed.
            def load() -> Config:
                return load_config(None, overrides=overrides, defaults=DEV_DEFAULTS)

            config = load()
            if isinstance(local, LocalCluster):
                started = (
                    f"local cluster: {len(local.nodes)} redis-server processes "
                    f"({', '.join(local.seeds)} are masters)"
                )
            else:
                started = local.describe()
            print(started, flush=True)

            def ready(address: Address) -> None:
                print(
                    f"redis-ambassador serving on {address}: try "
                    f"'redis-cli -p {address.port} set foo bar'; Ctrl-C stops everything",
                    flush=True,
                )

            nodes = NodeActions(local) if isinstance(local, LocalCluster) else None
            _run(config, ready, load, nodes)
    except RedisServerNotFound as exc:
        print(f"redis-ambassador: {exc}", file=sys.stderr)
        return 1
    return 0
