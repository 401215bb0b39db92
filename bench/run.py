"""Benchmark: redis-benchmark against a local Redis Cluster directly and through the ambassador.

Method and targets: docs/performance.md; usage and what each figure means: bench/README.md.
One command starts a 3-master cluster (no replicas) and one ambassador per target in front of it
(this tree; with --compare/--variant also other git refs and environments), runs every case direct
and through each ambassador interleaved round by round, measures each ambassador's CPU per request
and its RSS per idle client, prints a table with the targets, and writes bench/results/latest.json.
Exit code 0 even when targets are missed: it is a report.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import json
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from redis_ambassador.local.cluster import LocalCluster, LocalClusterError

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
TESTS = ("SET", "GET")
DIRECT = "direct"  # first in every round, then each ambassador target
PACKAGE = "redis_ambassador"
SINGLE_NAME = "ambassador"  # this tree's name when it is the only target (today's output)
THIS_TREE = "this tree"  # its name when other targets are compared with it
# Started instead of `-m redis_ambassador` (runpy does what -m does) so that the process itself
# says which package it imported before it serves: a target must run its own tree's code.
IMPORTED_MARK = "bench: imported "
LAUNCHER = (
    f"import runpy, {PACKAGE}; print({IMPORTED_MARK!r} + {PACKAGE}.__file__, flush=True); "
    f"runpy.run_module({PACKAGE!r}, run_name='__main__', alter_sys=True)"
)
KEYSPACE = 100_000
VALUE_SIZE = 3
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
BENCH_TIMEOUT = 300.0
CALIBRATION_ATTEMPTS = 4
# Above this much CPU used by processes outside the benchmark, the report warns about noise.
NOISY_OTHER_CORES = 0.25
# Fds kept back from the idle-client count for the cluster clients, redis-benchmark pipes, logs.
FD_MARGIN = 256
# "Returned near baseline": at most this share of the growth with idle clients is still held.
RETAINED_MAX_SHARE = 0.25
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Case:
    """One redis-benchmark load shape."""

    name: str
    clients: int
    pipeline: int
    warmup_requests: int  # per test, first calibration run; scaled up until runs are long enough
    min_requests: int  # per test: a floor so that a slow moment cannot shrink a case to noise


CASES = (
    Case("50 clients, pipeline 16", 50, 16, 200_000, 50_000),
    Case("50 clients, pipeline 1", 50, 1, 30_000, 10_000),
    Case("1 client, pipeline 1", 1, 1, 10_000, 5_000),
)

# The targets (docs/performance.md, "Targets"), applied to the worse of SET and GET. The
# 1-client latency target is "no more than predixy's in the same run"; this bench does not run
# predixy, so it checks predixy's figure from the last run that did (+24 us).
TARGET_P16_RATIO = 0.66
TARGET_P16_CPU_US = 1.4
TARGET_P1_RATIO = 0.75
TARGET_ADDED_P50_US = 24.0
TARGET_IDLE_KB = 4.0


class BenchError(RuntimeError):
    """Something needed for the report could not be run or measured."""


@dataclass
class TestFigures:
    """One row of redis-benchmark --csv: throughput and latency (ms) of one test."""

    rps: float
    avg_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class Run:
    """One redis-benchmark invocation (SET then GET) against one target."""

    case: str
    target: str  # "direct" or the ambassador target's name
    round: int
    requests_per_test: int
    wall_s: float
    tests: dict[str, TestFigures]
    ambassador_cpu_s: float | None = None  # utime+stime spent by the ambassador during the run
    loadavg_1m: float = 0.0  # before the run: other work on this shared machine adds noise
    test_seconds: dict[str, float] = field(default_factory=dict)  # requests / rps, per test
    other_cores: float = 0.0  # CPU used by processes not in this benchmark, in cores
    ambassador_wait_share: float = 0.0  # time the ambassador was runnable but not running
    stderr: str = ""


@dataclass
class IdleCycle:
    """One open-measure-close cycle of idle clients."""

    opened: int
    rss_with_kb: int  # a second after all were open and had answered one PING
    rss_after_kb: int  # a second after all were closed
    still_open: int  # connections the ambassador had not closed when measured
    open_s: float


@dataclass
class IdleResult:
    """RSS of the ambassador around N idle client connections, opened and closed twice."""

    requested: int
    rss_before_kb: int
    cycles: list[IdleCycle]
    note: str = ""
    opened: int = field(init=False)
    rss_with_kb: int = field(init=False)
    rss_after_kb: int = field(init=False)
    kb_per_client: float = field(init=False)
    retained_kb: int = field(init=False)
    returned_near_baseline: bool = field(init=False)
    second_cycle_growth_kb: int | None = field(init=False)

    def __post_init__(self) -> None:
        first, last = self.cycles[0], self.cycles[-1]
        self.opened = first.opened
        self.rss_with_kb = first.rss_with_kb
        self.rss_after_kb = last.rss_after_kb
        growth = self.rss_with_kb - self.rss_before_kb
        self.kb_per_client = growth / self.opened if self.opened else float("nan")
        self.retained_kb = self.rss_after_kb - self.rss_before_kb
        self.returned_near_baseline = self.retained_kb <= max(0.0, growth * RETAINED_MAX_SHARE)
        # Memory kept after cycle 1 but reused by cycle 2 is allocator retention, not a leak.
        self.second_cycle_growth_kb = (
            self.cycles[1].rss_with_kb - first.rss_with_kb if len(self.cycles) > 1 else None
        )


# -- /proc readings ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process (all its threads) in seconds, from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # comm (field 2) may contain spaces and parentheses, so split after its closing paren.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A "kB" line of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"{key} missing from /proc/{pid}/status")


def run_queue_wait_s(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (schedstat)."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total_ns += int((task / "schedstat").read_text().split()[1])
    return total_ns / 1e9


@dataclass(frozen=True)
class Probe:
    """CPU counters around a run, to tell how much other work shared the machine."""

    at: float
    machine_busy_s: float  # all CPUs, from /proc/stat
    ours_s: float  # this process, its waited children (redis-benchmark), nodes, ambassadors
    ambassador_wait_s: float

    @classmethod
    def take(cls, ambassador_pid: int, bench_pids: list[int]) -> Probe:
        """Read the counters now; `bench_pids`: the nodes and the other (idle) ambassadors."""
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        busy = (sum(fields[:8]) - idle) / CLK_TCK  # guest time is already inside user
        ours = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            ours += usage.ru_utime + usage.ru_stime
        for pid in [ambassador_pid, *bench_pids]:
            with contextlib.suppress(OSError):
                ours += cpu_seconds(pid)
        return cls(time.monotonic(), busy, ours, run_queue_wait_s(ambassador_pid))

    def since(self, before: Probe) -> tuple[float, float]:
        """(cores used by other processes, share of the time the ambassador waited for a CPU)."""
        wall = max(self.at - before.at, 1e-9)
        other = (self.machine_busy_s - before.machine_busy_s) - (self.ours_s - before.ours_s)
        return max(other, 0.0) / wall, (self.ambassador_wait_s - before.ambassador_wait_s) / wall


# -- redis-benchmark --------------------------------------------------------------------------


def parse_csv(stdout: str) -> dict[str, TestFigures]:
    """Rows of redis-benchmark 7 --csv; cluster mode prints a node list before the header."""
    lines = [line for line in stdout.splitlines() if line.startswith('"')]
    rows = list(csv.reader(lines))
    if not rows or rows[0][:2] != ["test", "rps"]:
        raise BenchError(f"no CSV header in redis-benchmark output: {stdout[-500:]!r}")
    header = rows[0]
    out: dict[str, TestFigures] = {}
    for row in rows[1:]:
        values = dict(zip(header, row, strict=True))
        out[values["test"]] = TestFigures(
            rps=float(values["rps"]),
            avg_ms=float(values["avg_latency_ms"]),
            min_ms=float(values["min_latency_ms"]),
            p50_ms=float(values["p50_latency_ms"]),
            p95_ms=float(values["p95_latency_ms"]),
            p99_ms=float(values["p99_latency_ms"]),
            max_ms=float(values["max_latency_ms"]),
        )
    missing = [t for t in TESTS if t not in out]
    if missing:
        raise BenchError(f"redis-benchmark reported no {missing}: {stdout[-500:]!r}")
    return out


def redis_benchmark(
    host: str, port: int, *, cluster: bool, case: Case, requests: int, threads: int = 0
) -> tuple[dict[str, TestFigures], float, str]:
    """Run SET and GET once; returns the figures, wall seconds and stderr."""
    cmd = ["redis-benchmark"]
    if cluster:
        cmd.append("--cluster")
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += ["-h", host, "-p", str(port), "-t", "set,get"]
    cmd += ["-r", str(KEYSPACE), "-d", str(VALUE_SIZE), "-c", str(case.clients)]
    cmd += ["-P", str(case.pipeline), "-n", str(requests), "--csv"]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=BENCH_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            f"redis-benchmark took over {BENCH_TIMEOUT:.0f} s: {' '.join(cmd)}"
        ) from exc
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise BenchError(
            f"redis-benchmark exited {proc.returncode}: {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    return parse_csv(proc.stdout), wall, proc.stderr.strip()


# -- the ambassador process -------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if we die without cleaning up (e.g. SIGKILL)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (tiny race until the ambassador binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class AmbassadorTarget:
    """One ambassador to benchmark: a source tree, run with extra environment and `serve` flags."""

    name: str
    tree: Path  # this worktree, or a temporary export of a git ref
    commit: str
    description: str
    ref: str | None = None  # the git ref as given to --compare
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    @property
    def import_root(self) -> Path:
        """First on PYTHONPATH: `<tree>/src` while the package lives there, else the tree."""
        src = self.tree / "src"
        return src if (src / PACKAGE / "__init__.py").is_file() else self.tree

    @property
    def package_dir(self) -> Path:
        """Where the ambassador must import the package from."""
        return self.import_root / PACKAGE

    @property
    def slug(self) -> str:
        """The name, safe in a file name."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)


class Ambassador:
    """The target's `python -m redis_ambassador serve` as a subprocess; stderr goes to a log."""

    def __init__(
        self, target: AmbassadorTarget, seeds: list[str], extra_args: list[str], log_path: Path
    ) -> None:
        self.target = target
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.log_path = log_path
        self.serve_args = ["serve", "--listen", f"{self.host}:{self.port}"]
        for seed in seeds:
            self.serve_args += ["--seed", seed]
        flags = extra_args + target.args
        if not any(f == "--admin" or f.startswith("--admin=") for f in flags):
            # Its own admin port: the default, 9090, would clash with the other targets' and
            # with any other ambassador running on this machine.
            self.serve_args += ["--admin", f"{self.host}:{free_port(self.host)}"]
        self.serve_args += flags
        self.cmd = [sys.executable, "-c", LAUNCHER, *self.serve_args]
        # Same interpreter and virtualenv for every target; only the package's tree differs.
        pythonpath = [str(target.import_root), os.environ.get("PYTHONPATH", "")]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))}
        self.env.update(target.env)
        self.imported: Path | None = None  # the package's __init__.py, as the process said
        self.compiled: list[str] = []  # compiled_modules() once it serves
        self.proc: subprocess.Popen[str] | None = None
        self.returncode: int | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def who(self) -> str:
        """How messages name it."""
        name = self.target.name
        return "ambassador" if name == SINGLE_NAME else f"ambassador {name!r}"

    @property
    def pid(self) -> int:
        """Pid of the running ambassador."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Spawn, wait for the "serving on" line with a deadline, check what it imported."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.target.tree,  # `python -c` puts the working directory first on sys.path
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                # Own group: a terminal Ctrl-C reaches only us, and we stop it in order.
                process_group=0,
                preexec_fn=_die_with_parent,
            )
        # A thread keeps draining stdout so the ambassador can never block on a full pipe.
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        wanted = f"redis-ambassador serving on {self.host}:{self.port}"
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                line = ""
            if line is None or self.proc.poll() is not None:
                raise BenchError(
                    f"{self.who} exited with {self.proc.wait()} before it "
                    f"was ready; {self.cmd}\n{self.log_tail()}"
                )
            if line.startswith(IMPORTED_MARK):
                self.imported = Path(line[len(IMPORTED_MARK) :].strip())
            if line.strip() == wanted:
                self._check_import()
                return
            if time.monotonic() >= deadline:
                raise BenchError(
                    f"{self.who} not ready after {READY_TIMEOUT:.0f} s\n{self.log_tail()}"
                )

    def _check_import(self) -> None:
        """Refuse to measure an ambassador that runs another tree's package than its target's."""
        expected = self.target.package_dir.resolve()
        if self.imported is None or self.imported.resolve().parent != expected:
            raise BenchError(
                f"{self.who} imported {PACKAGE} from {self.imported}, "
                f"not from {expected}: refusing to measure it"
            )

    def compiled_modules(self) -> list[str]:
        """Shared objects the running process mapped from its package (a compiled hot path)."""
        package = self.target.package_dir.resolve()
        found: set[str] = set()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/maps").read_text().splitlines():
                path = Path(line.split(maxsplit=5)[-1])
                if path.is_relative_to(package) and ".so" in path.name:
                    found.add(str(path.relative_to(package)))
        return sorted(found)

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def check_alive(self) -> None:
        """Raise if the ambassador has died (e.g. crashed mid-run)."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(f"{self.who} is not running (exit {code})\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"{self.who} ignored SIGTERM for {STOP_TIMEOUT:.0f} s; killing it")
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the ambassador's stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def problems(self) -> list[str]:
        """WARNING/ERROR/CRITICAL log lines and tracebacks from the ambassador's stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        keys = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "Error:")
        return [line for line in text.splitlines() if any(k in line for k in keys)]


def smoke_test(host: str, port: int) -> None:
    """SET then GET one key through the ambassador before spending minutes on it."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"*3\r\n$3\r\nSET\r\n$11\r\nbench:smoke\r\n$2\r\nok\r\n*2\r\n$3\r\nGET\r\n$11\r\nbench:smoke\r\n"
        )
        want = b"+OK\r\n$2\r\nok\r\n"
        got = b""
        while len(got) < len(want):
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    if got != want:
        raise BenchError(f"ambassador smoke test: expected {want!r}, got {got!r}")


# -- targets: which ambassadors, from which trees ---------------------------------------------


def _git(*args: str) -> str:
    """A git command's stdout in this worktree ("" when it fails)."""
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def this_tree(single: bool) -> AmbassadorTarget:
    """The working tree's ambassador, uncommitted changes included."""
    commit = _git("rev-parse", "HEAD")
    target = AmbassadorTarget(
        name=SINGLE_NAME if single else THIS_TREE, tree=ROOT, commit=commit, description=""
    )
    dirty = _git("status", "--porcelain", "--", str(target.package_dir))
    changes = ", with uncommitted changes" if dirty else ""
    target.description = f"the working tree {ROOT} (HEAD {commit[:10]}{changes})"
    return target


@contextlib.contextmanager
def exported_tree(commit: str) -> Iterator[Path]:
    """The files of `commit` (git archive) in a temporary directory, removed on every exit.

    Nothing is written to the repository (no worktree to prune), so a run that is killed leaves
    at most this directory behind."""
    tmp = Path(tempfile.mkdtemp(prefix="redis-ambassador-bench-"))
    try:
        tree, archive = tmp / "tree", tmp / "tree.tar"
        tree.mkdir()
        for cmd in (
            ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), commit],
            ["tar", "-xf", str(archive), "-C", str(tree)],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise BenchError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
        archive.unlink()
        yield tree
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ref_target(
    ref: str, args: argparse.Namespace, stack: contextlib.ExitStack
) -> AmbassadorTarget:
    """The ambassador as of git `ref`, exported (and built with --compare-build) for this run."""
    commit = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if not commit:
        raise BenchError(f"--compare {ref}: not a commit in {ROOT}")
    tree = stack.enter_context(exported_tree(commit))
    subject = _git("log", "-1", "--format=%s", commit)
    print(f"exported {ref} ({commit[:10]}) to {tree}")
    if args.compare_build:
        print(f"  building it: {args.compare_build}")
        venv_bin = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")])}
        proc = subprocess.run(
            args.compare_build,
            shell=True,
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()[-2000:]
            raise BenchError(f"--compare-build exited {proc.returncode} in {tree}:\n{output}")
    return AmbassadorTarget(
        name=ref,
        tree=tree,
        commit=commit,
        description=f'{ref} = {commit[:10]} "{_shorten(subject, 60)}"',
        ref=ref,
    )


def prepare_targets(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> list[AmbassadorTarget]:
    """This tree first, then each --compare ref and each --variant, with their own flags."""
    this = this_tree(single=not (args.compare or args.variant))
    targets = [this]
    for ref in args.compare:
        targets.append(_ref_target(ref, args, stack))
    for name, env in args.variant:
        settings = " ".join(f"{k}={v}" for k, v in env.items()) or "nothing"
        description = f"the working tree with {settings}"
        targets.append(AmbassadorTarget(name, ROOT, this.commit, description, env=env))
    names = [t.name for t in targets]
    for name in names:
        if names.count(name) > 1 or name in (DIRECT, "this"):
            raise BenchError(f"target name {name!r} is reserved or given twice")
    by_name = {t.name: t for t in targets} | {"this": this}
    for spec in args.target_arg:
        name, _, flags = spec.partition("=")
        if name not in by_name:
            raise BenchError(f"--target-arg {spec!r}: no target {name!r} (have {names})")
        by_name[name].args += shlex.split(flags)
    for target in targets:
        if not (target.package_dir / "__init__.py").is_file():
            raise BenchError(
                f"{target.name}: no {PACKAGE} package in {target.tree}/src or at its root"
            )
    return targets


# -- idle clients -----------------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (inherited by the ambassador); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard if soft == resource.RLIM_INFINITY else soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def measure_idle(amb: Ambassador, wanted: int, nofile: int, cycles: int = 2) -> IdleResult:
    """RSS before, with `wanted` idle connections open, and after they close; `cycles` times."""
    note = ""
    count = wanted
    if count > nofile - FD_MARGIN:
        count = max(0, nofile - FD_MARGIN)
        note = f"capped at {count} by RLIMIT_NOFILE={nofile} (hard limit)"
        print(f"idle clients: {note}")
    time.sleep(0.5)
    before = status_kb(amb.pid, "VmRSS")
    done: list[IdleCycle] = []
    for _ in range(cycles):
        cycle, problem = _idle_cycle(amb, count)
        done.append(cycle)
        note = note or problem
        print(
            f"  open {cycle.opened}: RSS {cycle.rss_with_kb / 1024:.1f} MB, "
            f"closed: {cycle.rss_after_kb / 1024:.1f} MB (baseline {before / 1024:.1f} MB)"
        )
    return IdleResult(requested=wanted, rss_before_kb=before, cycles=done, note=note)


def _idle_cycle(amb: Ambassador, count: int) -> tuple[IdleCycle, str]:
    socks: list[socket.socket] = []
    problem = ""
    start = time.monotonic()
    try:
        try:
            for _ in range(count):
                socks.append(socket.create_connection((amb.host, amb.port), timeout=10))
        except OSError as exc:
            problem = f"opened only {len(socks)} of {count}: {exc}"
            print(f"idle clients: {problem}")
        # One PING each, answered: proves the ambassador accepted the connection and built its
        # per-client state, like a pooled client that has been used once and now sits idle.
        ping = b"*1\r\n$4\r\nPING\r\n"
        for sock in socks:
            sock.sendall(ping)
        for sock in socks:
            got = b""
            while len(got) < 7:
                chunk = sock.recv(64)
                if not chunk:
                    raise BenchError(f"ambassador closed an idle client before PONG ({got!r})")
                got += chunk
            if got != b"+PONG\r\n":
                raise BenchError(f"unexpected PING reply {got!r}")
        open_s = time.monotonic() - start
        time.sleep(1.0)
        with_clients = status_kb(amb.pid, "VmRSS")
        still_open = sum(1 for sock in socks if _still_open(sock))
    finally:
        for sock in socks:
            sock.close()
    time.sleep(1.0)
    after = status_kb(amb.pid, "VmRSS")
    cycle = IdleCycle(
        opened=len(socks),
        rss_with_kb=with_clients,
        rss_after_kb=after,
        still_open=still_open,
        open_s=open_s,
    )
    return cycle, problem


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


# -- runs -------------------------------------------------------------------------------------


def _fmt_progress(run: Run, width: int) -> str:
    figures = "  ".join(
        f"{t} {run.tests[t].rps:>9,.0f} rps p50 {run.tests[t].p50_ms:.3f} ms" for t in TESTS
    )
    cpu = ""
    if run.ambassador_cpu_s is not None:
        per_req = run.ambassador_cpu_s * 1e6 / (run.requests_per_test * len(TESTS))
        cpu = f"  cpu {per_req:.2f} us/req, waited {run.ambassador_wait_share:.0%}"
    return (
        f"  {run.target:<{width}} {figures}  ({run.wall_s:.1f} s, others "
        f"{run.other_cores:.2f} cores){cpu}"
    )


def _resize(case: Case, n: int, wall_s: float, wanted_s: float, max_step: float = 2.0) -> int:
    """Requests per test for a run of about `wanted_s`, given that `n` took `wall_s`."""
    scale = min(max(wanted_s / max(wall_s, 1e-3), 1 / max_step), max_step)
    return max(int(round(n * scale, -3)), case.min_requests)


class Runner:
    """Runs redis-benchmark direct or against one ambassador, reading counters around it."""

    def __init__(
        self, cluster: LocalCluster, ambassadors: list[Ambassador], args: argparse.Namespace
    ) -> None:
        host, port = cluster.seeds[0].rsplit(":", 1)
        self.direct = (host, int(port))
        self.node_pids = [n.pid for n in cluster.nodes if n.pid is not None]
        self.ambassadors = {amb.target.name: amb for amb in ambassadors}
        self.first = ambassadors[0]  # read around direct runs too, as when there was only one
        self.direct_threads: int = args.direct_threads
        self.names = [DIRECT, *self.ambassadors]
        self.width = max(10, *(len(name) for name in self.names))

    def run(self, case: Case, target: str, rnd: int, n: int) -> Run:
        """One SET+GET run of `n` requests per test against `target`."""
        amb = self.ambassadors.get(target, self.first)
        # The idle ambassadors are part of the benchmark, not "other work on this machine".
        bench_pids = self.node_pids + [a.pid for a in self.ambassadors.values() if a is not amb]
        self.check_alive()
        load = float(Path("/proc/loadavg").read_text().split()[0])
        probe_before = Probe.take(amb.pid, bench_pids)
        cpu_before = cpu_seconds(amb.pid)
        if target == DIRECT:
            host, port = self.direct
            tests, wall, err = redis_benchmark(
                host, port, cluster=True, case=case, requests=n, threads=self.direct_threads
            )
        else:
            tests, wall, err = redis_benchmark(
                amb.host, amb.port, cluster=False, case=case, requests=n
            )
        cpu = cpu_seconds(amb.pid) - cpu_before
        other_cores, wait_share = Probe.take(amb.pid, bench_pids).since(probe_before)
        self.check_alive()
        return Run(
            case=case.name,
            target=target,
            round=rnd,
            requests_per_test=n,
            wall_s=wall,
            tests=tests,
            ambassador_cpu_s=cpu if target != DIRECT else None,
            loadavg_1m=load,
            other_cores=other_cores,
            ambassador_wait_share=wait_share,
            test_seconds={t: n / f.rps for t, f in tests.items() if f.rps > 0},
            stderr=err,
        )

    def check_alive(self) -> None:
        """Raise if any ambassador has died."""
        for amb in self.ambassadors.values():
            amb.check_alive()


def calibrate(runner: Runner, run_seconds: float) -> dict[tuple[str, str], int]:
    """Requests per test, per case and target, for runs of about `run_seconds` (not reported)."""
    # Runs are sized by wall time, never by the rps of a short run: in --cluster mode
    # redis-benchmark runs one thread per master and a test only ends on a 250 ms timer tick,
    # so short direct runs report far too few rps (see README). Warm-up runs are not reported.
    print("warm-up and calibration")
    requests: dict[tuple[str, str], int] = {}
    for case in CASES:
        for target in runner.names:
            n = case.warmup_requests
            for _ in range(CALIBRATION_ATTEMPTS):
                warm = runner.run(case, target, 0, n)
                n = _resize(case, n, warm.wall_s, run_seconds, max_step=10.0)
                if warm.wall_s >= run_seconds * 0.5:
                    break
            requests[(case.name, target)] = n
        counts = ", ".join(f"{t} {requests[(case.name, t)]:,}" for t in runner.names)
        print(f"  {case.name}: {counts} requests per test")
    return requests


def run_rounds(
    runner: Runner, requests: dict[tuple[str, str], int], args: argparse.Namespace
) -> list[Run]:
    """Every case, round by round: direct, then each ambassador, their order rotated per round."""
    runs: list[Run] = []
    ambassadors = runner.names[1:]
    for rnd in range(1, args.rounds + 1):
        # Rotating spreads drift within a round over the targets instead of always favouring one.
        shift = (rnd - 1) % len(ambassadors)
        order = [DIRECT, *ambassadors[shift:], *ambassadors[:shift]]
        for case in CASES:
            print(f"round {rnd}/{args.rounds}: {case.name}")
            for target in order:
                n = requests[(case.name, target)]
                run = runner.run(case, target, rnd, n)
                runs.append(run)
                print(_fmt_progress(run, runner.width))
                if run.stderr:
                    print(f"    redis-benchmark stderr: {run.stderr[-300:]}")
                # Follow the machine's speed so every run stays near --run-seconds; rps are
                # rates, so the targets and the rounds need not use the same count.
                requests[(case.name, target)] = _resize(case, n, run.wall_s, args.run_seconds)
    return runs


# -- summary ----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _runs_of(runs: list[Run], case: Case, target: str) -> list[Run]:
    """One case's runs against one target, by round."""
    return sorted((r for r in runs if r.case == case.name and r.target == target), key=_round)


def _round(run: Run) -> int:
    return run.round


def _cpu_us_per_request(run: Run) -> float:
    """The ambassador's CPU over a SET+GET run, per request."""
    assert run.ambassador_cpu_s is not None
    return run.ambassador_cpu_s * 1e6 / (run.requests_per_test * len(TESTS))


def versus(runs: list[Run], base: str, target: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per case and test: `target` against `base` (this tree), paired per round like the ratios
    to direct: rps as a ratio, CPU per request and latency percentiles as differences."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case in CASES:
        pairs = list(zip(_runs_of(runs, case, base), _runs_of(runs, case, target), strict=True))
        cpu_diff = [_cpu_us_per_request(t) - _cpu_us_per_request(b) for b, t in pairs]
        per_test: dict[str, dict[str, Any]] = {}
        for test in TESTS:
            ratios = [t.tests[test].rps / b.tests[test].rps for b, t in pairs]
            per_test[test] = {
                "rps_ratio": _median(ratios),
                "rps_ratio_min": min(ratios, default=float("nan")),
                "rps_ratio_max": max(ratios, default=float("nan")),
                "rps_ratios": ratios,
                # Read around a whole SET+GET run, like the CPU per request: per case.
                "cpu_us_per_request_diff": _median(cpu_diff),
                "p50_diff_us": _median(
                    [(t.tests[test].p50_ms - b.tests[test].p50_ms) * 1000 for b, t in pairs]
                ),
                "p99_diff_us": _median(
                    [(t.tests[test].p99_ms - b.tests[test].p99_ms) * 1000 for b, t in pairs]
                ),
            }
        out[case.name] = per_test
    return out


def summarize(runs: list[Run], target: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per case and test, for one ambassador target: medians over rounds, and paired (same-round)
    ratios and deltas against direct."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for case in CASES:
        direct = _runs_of(runs, case, DIRECT)
        amb = _runs_of(runs, case, target)
        pairs = list(zip(direct, amb, strict=True))
        cpu_us = [_cpu_us_per_request(r) for r in amb if r.ambassador_cpu_s is not None]
        cpu_share = [r.ambassador_cpu_s / r.wall_s for r in amb if r.ambassador_cpu_s is not None]
        wait_share = [r.ambassador_wait_share for r in amb]
        per_test: dict[str, dict[str, Any]] = {}
        for test in TESTS:
            ratios = [a.tests[test].rps / d.tests[test].rps for d, a in pairs]
            per_test[test] = {
                "direct_rps": _median([r.tests[test].rps for r in direct]),
                "ambassador_rps": _median([r.tests[test].rps for r in amb]),
                # Median of same-round ratios: interleaving makes each pair see the same drift.
                "ratio": _median(ratios),
                "ratio_min": min(ratios, default=float("nan")),
                "ratio_max": max(ratios, default=float("nan")),
                "ratios": ratios,
                "direct_p50_ms": _median([r.tests[test].p50_ms for r in direct]),
                "direct_p99_ms": _median([r.tests[test].p99_ms for r in direct]),
                "ambassador_p50_ms": _median([r.tests[test].p50_ms for r in amb]),
                "ambassador_p99_ms": _median([r.tests[test].p99_ms for r in amb]),
                "added_p50_us": _median(
                    [(a.tests[test].p50_ms - d.tests[test].p50_ms) * 1000 for d, a in pairs]
                ),
                "added_p99_us": _median(
                    [(a.tests[test].p99_ms - d.tests[test].p99_ms) * 1000 for d, a in pairs]
                ),
                # The ambassador's CPU is read around a whole SET+GET run, so it is per case.
                "ambassador_cpu_us_per_request": _median(cpu_us),
                "ambassador_cpu_share_of_one_core": _median(cpu_share),
                "ambassador_run_queue_wait_share": _median(wait_share),
                "direct_test_seconds": _median([r.test_seconds[test] for r in direct]),
                "ambassador_test_seconds": _median([r.test_seconds[test] for r in amb]),
                "other_cores_direct": _median([r.other_cores for r in direct]),
                "other_cores_ambassador": _median([r.other_cores for r in amb]),
            }
        summary[case.name] = per_test
    return summary


def evaluate_targets(
    summary: dict[str, dict[str, dict[str, Any]]], idle: IdleResult | None
) -> list[dict[str, Any]]:
    """Each target of docs/performance.md with its figure (the worse of SET and GET) and
    PASS/MISS."""
    p16, p1, one = (summary[c.name] for c in CASES)
    p16_ratio = min(p16[t]["ratio"] for t in TESTS)
    p16_cpu = max(p16[t]["ambassador_cpu_us_per_request"] for t in TESTS)
    p1_ratio = min(p1[t]["ratio"] for t in TESTS)
    added = max(one[t]["added_p50_us"] for t in TESTS)
    targets: list[dict[str, Any]] = [
        {
            "target": f"50 clients, pipeline 16: ratio >= {TARGET_P16_RATIO}",
            "figure": f"{p16_ratio:.2f}x",
            "value": p16_ratio,
            "pass": p16_ratio >= TARGET_P16_RATIO,
        },
        {
            "target": f"50 clients, pipeline 16: CPU <= {TARGET_P16_CPU_US} us per request",
            "figure": f"{p16_cpu:.2f} us",
            "value": p16_cpu,
            "pass": p16_cpu <= TARGET_P16_CPU_US,
        },
        {
            "target": f"50 clients, pipeline 1: ratio >= {TARGET_P1_RATIO}",
            "figure": f"{p1_ratio:.2f}x",
            "value": p1_ratio,
            "pass": p1_ratio >= TARGET_P1_RATIO,
        },
        {
            "target": f"1 client: added p50 <= {TARGET_ADDED_P50_US:.0f} us",
            "figure": f"{added:+.0f} us",
            "value": added,
            "pass": added <= TARGET_ADDED_P50_US,
        },
    ]
    if idle is not None and idle.opened:
        targets.append(
            {
                "target": f"idle clients: <= {TARGET_IDLE_KB:.0f} KB RSS each ({idle.opened} open)",
                "figure": f"{idle.kb_per_client:.2f} KB/client",
                "value": idle.kb_per_client,
                "pass": idle.kb_per_client <= TARGET_IDLE_KB,
            }
        )
        targets.append(
            {
                "target": "idle clients: RSS returns near baseline after they leave",
                "figure": f"{idle.retained_kb:+d} KB retained (limit {RETAINED_MAX_SHARE:.0%} "
                f"of the {idle.rss_with_kb - idle.rss_before_kb} KB growth)",
                "value": idle.retained_kb,
                "pass": idle.returned_near_baseline,
            }
        )
    return targets


@dataclass
class Outcome:
    """What one ambassador target measured."""

    amb: Ambassador
    idle: IdleResult | None = None
    summary: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)  # evaluate_targets()
    rss_end_kb: int | None = None
    peak_rss_kb: int | None = None
    vs_this_tree: dict[str, dict[str, dict[str, Any]]] | None = None  # versus()

    @property
    def name(self) -> str:
        """The target's name."""
        return self.amb.target.name


def print_report(outcomes: list[Outcome], rounds: int, direct_rounded: bool) -> None:
    """The table (a block of rows per target), the noise, the idle clients and the targets."""
    single = len(outcomes) == 1
    header = (
        f"{'case':<24} {'test':<4} {'direct rps':>11} {'amb rps':>10} {'ratio':>5} "
        f"{'(min-max)':>11} {'direct p50/p99 ms':>17} {'amb p50/p99 ms':>15} "
        f"{'added p50/p99 us':>16} {'amb CPU us/req':>14} {'amb CPU/wait':>12}"
    )
    print()
    print(f"Medians over {rounds} interleaved rounds (ratio = ambassador/direct, paired per round)")
    print(header)
    print("-" * len(header))
    for outcome in outcomes:
        if not single:
            print(f"[{outcome.name}] {outcome.amb.target.description}")
        _print_rows(outcome.summary)
    if not single:
        _print_versus(outcomes)
    _print_noise([o.summary for o in outcomes], direct_rounded)
    print()
    for outcome in outcomes:
        _print_idle(outcome.idle, "" if single else f" ({outcome.name})")
    print()
    print("Targets (docs/performance.md; figure = the worse of SET and GET)")
    for outcome in outcomes:
        indent = "  " if single else "    "
        if not single:
            print(f"  {outcome.name}:")
        for t in outcome.goals:
            print(f"{indent}{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['figure']}")


def _print_rows(summary: dict[str, dict[str, dict[str, Any]]]) -> None:
    for case in CASES:
        for test in TESTS:
            s = summary[case.name][test]
            print(
                f"{case.name:<24} {test:<4} "
                f"{s['direct_rps']:>11,.0f} {s['ambassador_rps']:>10,.0f} "
                f"{s['ratio']:>5.2f} {s['ratio_min']:>5.2f}-{s['ratio_max']:<5.2f} "
                f"{s['direct_p50_ms']:>8.3f}/{s['direct_p99_ms']:<8.3f} "
                f"{s['ambassador_p50_ms']:>7.3f}/{s['ambassador_p99_ms']:<7.3f} "
                f"{s['added_p50_us']:>+7.0f}/{s['added_p99_us']:<+8.0f} "
                f"{s['ambassador_cpu_us_per_request']:>14.2f} "
                f"{s['ambassador_cpu_share_of_one_core']:>7.0%}/"
                f"{s['ambassador_run_queue_wait_share']:<4.0%}"
            )


def _print_versus(outcomes: list[Outcome]) -> None:
    this = outcomes[0]
    width = max(6, *(len(o.name) for o in outcomes))
    header = (
        f"{'target':<{width}} {'case':<24} {'test':<4} {'rps ratio':>9} {'(min-max)':>11} "
        f"{'CPU us/req diff (target vs this)':>32} {'p50/p99 diff us':>16}"
    )
    print()
    print(
        f"Each target vs {this.name} (paired per round: rps ratio = target / {this.name} of the "
        "same round; CPU and latency: target minus it)"
    )
    print(header)
    print("-" * len(header))
    for outcome in outcomes[1:]:
        assert outcome.vs_this_tree is not None
        for case in CASES:
            for test in TESTS:
                v = outcome.vs_this_tree[case.name][test]
                cpu = (
                    f"{v['cpu_us_per_request_diff']:+.2f} "
                    f"({outcome.summary[case.name][test]['ambassador_cpu_us_per_request']:.2f} vs "
                    f"{this.summary[case.name][test]['ambassador_cpu_us_per_request']:.2f})"
                )
                print(
                    f"{outcome.name:<{width}} {case.name:<24} {test:<4} {v['rps_ratio']:>9.2f} "
                    f"{v['rps_ratio_min']:>5.2f}-{v['rps_ratio_max']:<5.2f} {cpu:>32} "
                    f"{v['p50_diff_us']:>+7.0f}/{v['p99_diff_us']:<+8.0f}"
                )


def _print_noise(
    summaries: list[dict[str, dict[str, dict[str, Any]]]], direct_rounded: bool
) -> None:
    per_test = [s for summary in summaries for tests in summary.values() for s in tests.values()]
    others = [s[f"other_cores_{side}"] for s in per_test for side in ("direct", "ambassador")]
    shortest = min((s["direct_test_seconds"] for s in per_test), default=float("nan"))
    if direct_rounded:
        print(
            f"Direct tests lasted at least {shortest:.2f} s (median); redis-benchmark --cluster "
            f"rounds a test up to a 250 ms step, so direct rps may be understated by up to "
            f"{0.25 / shortest:.0%}, which flatters the ratios"
        )
    busiest = max(others, default=0.0)
    print(
        f"Other work on this machine during the runs: up to {busiest:.2f} cores "
        f"(median per case and target) of {os.cpu_count()}"
    )
    if busiest > NOISY_OTHER_CORES:
        print(
            "  WARNING: other processes competed for the CPUs; ratios are noisier than usual "
            "(see the min-max spread), rerun on a quieter machine to compare settings"
        )


def _print_idle(idle: IdleResult | None, label: str) -> None:
    if idle is None:
        print(f"idle clients{label}: skipped")
        return
    growth = idle.rss_with_kb - idle.rss_before_kb
    returned = (
        "returned near baseline" if idle.returned_near_baseline else "did NOT return near baseline"
    )
    print(
        f"idle clients{label}: {idle.opened} open: RSS {idle.rss_before_kb / 1024:.1f} MB -> "
        f"{idle.rss_with_kb / 1024:.1f} MB (+{growth / 1024:.1f} MB, "
        f"{idle.kb_per_client:.2f} KB/client) -> "
        f"{idle.rss_after_kb / 1024:.1f} MB after close ({idle.retained_kb:+d} KB: {returned})"
    )
    extra = idle.second_cycle_growth_kb
    if extra is not None:
        first_growth = max(growth, 1)
        verdict = (
            "grew again: possible leak"
            if extra > first_growth * RETAINED_MAX_SHARE
            else "reused what cycle 1 left: allocator retention, not a leak"
        )
        print(f"  second open/close cycle: RSS with clients {extra:+d} KB vs first ({verdict})")
    for number, cycle in enumerate(idle.cycles, 1):
        if cycle.still_open != cycle.opened:
            print(
                f"  note: cycle {number}: only {cycle.still_open} of {cycle.opened} "
                "were still open when measured"
            )
    if idle.note:
        print(f"  note: {idle.note}")


# -- main -------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Direct Redis Cluster vs redis-ambassador, interleaved (see bench/README.md)."
    )
    parser.add_argument("--quick", action="store_true", help="fast smoke run: 2 short rounds")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument(
        "--run-seconds",
        type=float,
        help="target length of one SET+GET run, direct or ambassador; request counts follow "
        "the machine's speed (default 4.0, quick 1.5)",
    )
    parser.add_argument(
        "--idle-clients",
        type=int,
        help="idle connections to open (default 10000, quick 1000; 0 skips)",
    )
    parser.add_argument(
        "--ambassador-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra flag(s) for `serve`, repeatable, split like a shell: "
        "--ambassador-arg='--pool-size 4'",
    )
    parser.add_argument(
        "--direct-threads",
        type=int,
        default=0,
        metavar="N",
        help="--threads for the direct runs (default: redis-benchmark's own, one per master)",
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS_DIR / "latest.json", help="results file"
    )
    _add_target_options(parser)
    args = parser.parse_args(argv)
    # The = form keeps argparse from reading the value as one of our own flags.
    args.ambassador_arg = [part for value in args.ambassador_arg for part in shlex.split(value)]
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.run_seconds = args.run_seconds or (1.5 if args.quick else 4.0)
    if args.idle_clients is None:
        args.idle_clients = 1000 if args.quick else 10_000
    if args.rounds < 1 or args.run_seconds <= 0 or args.idle_clients < 0:
        parser.error("--rounds and --run-seconds must be positive, --idle-clients >= 0")
    return args


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    """Which ambassadors to benchmark besides this tree's, in the same run."""
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="REF",
        help="also benchmark the ambassador as of git REF (main, HEAD~3, a commit), exported to "
        "a temporary directory; repeatable",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        metavar="NAME:ENV=VALUE[,ENV=VALUE...]",
        help="also benchmark this tree's ambassador with these environment variables, "
        "as target NAME; repeatable",
    )
    parser.add_argument(
        "--target-arg",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra `serve` flags for one target (a --compare REF, a --variant NAME, or 'this'), "
        "after the --ambassador-arg ones, split like a shell: --target-arg='main=--pool-size 4'",
    )
    parser.add_argument(
        "--compare-build",
        metavar="CMD",
        help="shell command run in each --compare tree before its ambassador starts (e.g. to "
        "build a compiled module in place), with the virtualenv's bin first on PATH",
    )
    parser.add_argument(
        "--idle-targets",
        choices=("all", "this"),
        default="all",
        help="whose idle-client RSS to measure: every target (default) or only this tree",
    )


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """`NAME:ENV=VALUE[,ENV=VALUE...]` (values cannot contain commas) as (NAME, env)."""
    name, sep, assignments = spec.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME:ENV=VALUE[,ENV=VALUE...]")
    env: dict[str, str] = {}
    for item in filter(None, assignments.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise argparse.ArgumentTypeError(f"{spec!r}: {item!r} is not ENV=VALUE")
        env[key] = value
    return name, env


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop the ambassador and the cluster."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _git_state(this: AmbassadorTarget) -> dict[str, Any]:
    return {
        "commit": this.commit,
        "src_dirty": bool(_git("status", "--porcelain", "--", str(this.package_dir))),
    }


def _machine() -> dict[str, Any]:
    version = subprocess.run(
        ["redis-benchmark", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis_benchmark": version,
        "loadavg_at_start": loadavg,
    }


def start_ambassadors(
    targets: list[AmbassadorTarget],
    cluster: LocalCluster,
    args: argparse.Namespace,
    stack: contextlib.ExitStack,
) -> list[Ambassador]:
    """One ambassador per target, each on its own port, checked with a SET and GET."""
    single = len(targets) == 1
    ambassadors: list[Ambassador] = []
    for target in targets:
        log = RESULTS_DIR / ("ambassador.log" if single else f"ambassador-{target.slug}.log")
        amb = Ambassador(target, cluster.seeds, args.ambassador_arg, log)
        label = "the ambassador" if single else f"ambassador {target.name!r} ({target.description})"
        print(f"starting {label}: -m {PACKAGE} {' '.join(amb.serve_args)}")
        stack.callback(amb.stop)
        amb.start()
        smoke_test(amb.host, amb.port)
        amb.compiled = amb.compiled_modules()
        if not single:
            compiled = ", ".join(amb.compiled) or "none"
            print(f"  imports {amb.imported}; compiled modules from its package: {compiled}")
        ambassadors.append(amb)
    this = ambassadors[0]
    for amb in ambassadors[1:]:
        if amb.target.ref and amb.compiled != this.compiled:
            # An export has only what git tracks: a module built in place is missing there.
            print(
                f"  note: {amb.target.name!r} maps {len(amb.compiled)} compiled module(s) from its "
                f"package, this tree {len(this.compiled)}; if it has a build step, see "
                "--compare-build"
            )
    return ambassadors


def measure_all_idle(outcomes: list[Outcome], args: argparse.Namespace, nofile: int) -> None:
    """Idle-client RSS on each target's fresh process (before any load), one at a time."""
    if not args.idle_clients:
        return
    chosen = outcomes if args.idle_targets == "all" else outcomes[:1]
    for outcome in chosen:
        label = "" if len(outcomes) == 1 else f" ({outcome.name})"
        print(f"idle clients{label}: opening {args.idle_clients}")
        outcome.idle = measure_idle(outcome.amb, args.idle_clients, nofile)


def _measure(
    args: argparse.Namespace,
    results: dict[str, Any],
    nofile: int,
    stack: contextlib.ExitStack,
) -> list[Outcome]:
    """Start everything (stopped by `stack`), measure, and fill in `results`."""
    targets = prepare_targets(args, stack)
    results["git"] = _git_state(targets[0])
    cluster = LocalCluster(masters=3, replicas_per_master=0)
    stack.callback(cluster.stop)
    print("starting a 3-master cluster (no replicas)")
    cluster.start()
    ambassadors = start_ambassadors(targets, cluster, args, stack)
    results["ambassador_cmd"] = ambassadors[0].cmd
    results["cluster_seeds"] = cluster.seeds
    outcomes = [Outcome(amb) for amb in ambassadors]
    measure_all_idle(outcomes, args, nofile)
    if outcomes[0].idle is not None:
        results["idle_clients"] = asdict(outcomes[0].idle)

    runner = Runner(cluster, ambassadors, args)
    requests = calibrate(runner, args.run_seconds)
    runs = run_rounds(runner, requests, args)
    results["requests_per_test_next"] = {f"{c} / {t}": n for (c, t), n in requests.items()}
    results["runs"] = [asdict(r) for r in runs]
    for outcome in outcomes:
        outcome.rss_end_kb = status_kb(outcome.amb.pid, "VmRSS")
        outcome.peak_rss_kb = status_kb(outcome.amb.pid, "VmHWM")
        outcome.summary = summarize(runs, outcome.name)
        outcome.goals = evaluate_targets(outcome.summary, outcome.idle)
        if outcome is not outcomes[0]:
            outcome.vs_this_tree = versus(runs, outcomes[0].name, outcome.name)
    this = outcomes[0]
    results["ambassador_rss_kb_end"] = this.rss_end_kb
    results["ambassador_peak_rss_kb"] = this.peak_rss_kb
    results["summary"] = this.summary
    results["targets"] = this.goals
    return outcomes


def _target_json(outcome: Outcome) -> dict[str, Any]:
    """Everything about one ambassador target, for the JSON file."""
    amb, target = outcome.amb, outcome.amb.target
    return {
        "name": target.name,
        "description": target.description,
        "ref": target.ref,
        "commit": target.commit,
        "tree": str(target.tree),
        "imported": str(amb.imported),
        "compiled_modules": amb.compiled,
        "env": target.env,
        "cmd": amb.cmd,
        "log": str(amb.log_path),
        "idle_clients": asdict(outcome.idle) if outcome.idle is not None else None,
        "summary": outcome.summary,
        "targets": outcome.goals,
        "vs_this_tree": outcome.vs_this_tree,
        "rss_kb_end": outcome.rss_end_kb,
        "peak_rss_kb": outcome.peak_rss_kb,
        "exit_code": amb.returncode,
        "problems": amb.problems(),
    }


def _report(
    args: argparse.Namespace, results: dict[str, Any], outcomes: list[Outcome], wall: float
) -> None:
    """Print the report, then write the JSON file."""
    this = outcomes[0]
    results["wall_s"] = wall
    results["ambassador_exit_code"] = this.amb.returncode
    results["ambassador_problems"] = this.amb.problems()
    results["ambassadors"] = [_target_json(o) for o in outcomes]
    # One benchmark thread ends each test exactly; several end it on a 250 ms tick.
    print_report(outcomes, args.rounds, direct_rounded=args.direct_threads != 1)
    for outcome in outcomes:
        _print_problems(outcome.amb)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(args.json)
    print(f"\nwall time {wall:.0f} s; results in {args.json}")


def _print_problems(amb: Ambassador) -> None:
    problems = amb.problems()
    if problems:
        print(
            f"\n{amb.who} stderr had {len(problems)} warning/error line(s) "
            f"(full log: {amb.log_path}):"
        )
        for line in problems[:10]:
            print(f"  {line}")
    if amb.returncode not in (0, None):
        print(f"\n{amb.who} exited with code {amb.returncode} on SIGTERM")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    for tool in ("redis-benchmark", "redis-server"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} not found on PATH; run scripts/bootstrap", file=sys.stderr)
            return 1
    started = time.monotonic()
    # Before anything is spawned, so the ambassadors inherit the raised limit too.
    nofile = raise_nofile()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": _machine(),
        "rlimit_nofile": nofile,
    }
    try:
        with _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            outcomes = _measure(args, results, nofile, stack)
    except KeyboardInterrupt:
        print("\nbench: interrupted; ambassadors and cluster stopped", file=sys.stderr)
        return 130
    except (BenchError, LocalClusterError, OSError) as exc:
        print(f"bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _report(args, results, outcomes, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
