#!/usr/bin/env python3
"""Build and run a real OpenSearch node (or a cluster of several) for lorebot's tests.

Standard library only, so ``.ci/run`` can use it before the project's virtualenv exists::

    python3 deploy/opensearch-node/opensearch_node.py start [--nodes 3] [--dir DIR]
    python3 deploy/opensearch-node/opensearch_node.py stop [--dir DIR]

``start`` builds the Maven project beside this file if needed (offline first, from ``~/.m2``,
then online), starts each node in a JVM of its own on free loopback ports, waits until the
cluster is green with every node joined, prints ``OPENSEARCH_URL=http://127.0.0.1:PORT`` and
``OPENSEARCH_KNN_ENGINE=lucene`` and returns, leaving the nodes running; ``stop`` ends them
(SIGTERM: each node closes cleanly; SIGKILL after a grace period). Each node gets its own
process so a test can stop one data node of a cluster and start it again (``Cluster`` below).

k-NN engine: the k-NN plugin published on Maven Central has no JNI libraries (faiss, nmslib),
so these nodes run the pure-Java ``lucene`` engine; a faiss mapping would make a node fail at
its first refresh (``UnsatisfiedLinkError: no opensearchknn_faiss_avx2``). lorebot maps with
faiss by default; the tests read ``OPENSEARCH_KNN_ENGINE``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE / "target"
KNN_ENGINE = "lucene"
DEFAULT_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "lorebot-opensearch-node"
MAIN_CLASS = "lorebot.opensearch.Main"


def log(message: str) -> None:
    print(f"opensearch-node: {message}", file=sys.stderr, flush=True)


# ---- build ------------------------------------------------------------------------------------

def _built() -> bool:
    """The classes, the launch classpath and the k-NN plugin are there and newer than the sources."""
    main = TARGET / "classes" / "lorebot" / "opensearch" / "Main.class"
    if not (main.exists() and (TARGET / "lib").is_dir() and any((TARGET / "knn").glob("*.jar"))):
        return False
    stamp = main.stat().st_mtime
    sources = [HERE / "pom.xml", *(HERE / "src").rglob("*.java")]
    return all(s.stat().st_mtime <= stamp for s in sources)


def build() -> None:
    """``mvn package``: offline when ``~/.m2`` has everything, else online."""
    if _built():
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn is not on PATH")
    base = [mvn, "-q", "-B", "-f", str(HERE / "pom.xml"), "package"]
    started = time.monotonic()
    offline = subprocess.run([*base[:-1], "-o", "package"], capture_output=True, text=True)
    if offline.returncode != 0:
        log("offline build failed (artifacts not cached yet?); building online")
        online = subprocess.run(base, capture_output=True, text=True)
        if online.returncode != 0:
            raise RuntimeError("mvn package failed:\n" + (online.stdout + online.stderr)[-4000:])
    # mvn leaves Main.class alone when it is up to date; touch it so _built() sees the build.
    (TARGET / "classes" / "lorebot" / "opensearch" / "Main.class").touch()
    log(f"built in {time.monotonic() - started:.1f} s")


# ---- nodes ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def java_command() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no java: set JAVA_HOME or put java on PATH")
    return java


@dataclass
class NodeProcess:
    name: str
    home: Path
    http_port: int
    transport_port: int
    process: subprocess.Popen | None = None

    @property
    def url_file(self) -> Path:
        return self.home / "url"

    @property
    def log_file(self) -> Path:
        return self.home / "node.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class Cluster:
    """Nodes in JVMs of their own, under ``base``; ``url`` is the first node's HTTP address."""

    base: Path
    nodes: list[NodeProcess] = field(default_factory=list)
    heap: str = "512m"
    cluster_name: str = "lorebot-test"
    # Node settings (``key=value``) every node starts with, e.g. a tiny write queue for the
    # fault tests: thread pool sizes cannot change on a running node.
    settings: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, base: Path, count: int = 1, *, heap: str = "512m",
               settings: list[str] | None = None) -> Cluster:
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        nodes = [NodeProcess(f"node-{i}", base / f"node-{i}", free_port(), free_port())
                 for i in range(count)]
        cluster = cls(base, nodes, heap, settings=list(settings or ()))
        # What another process needs to stop or restart these nodes (``attach``): a restarted
        # node must come back on the same ports, with the same seed hosts and settings.
        (base / "cluster.json").write_text(json.dumps({
            "heap": heap, "cluster_name": cluster.cluster_name, "settings": cluster.settings,
            "nodes": [{"name": n.name, "http_port": n.http_port,
                       "transport_port": n.transport_port} for n in nodes],
        }, indent=1) + "\n")
        return cluster

    @classmethod
    def attach(cls, base: Path) -> Cluster:
        """The cluster a ``start --dir base`` launched, from another process: its nodes can be
        stopped (by pid file) and started again on their ports."""
        try:
            info = json.loads((base / "cluster.json").read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{base} holds no cluster started by this launcher: {exc}")
        nodes = [NodeProcess(n["name"], base / n["name"], n["http_port"], n["transport_port"])
                 for n in info["nodes"]]
        return cls(base, nodes, info["heap"], info["cluster_name"], list(info["settings"]))

    def running(self, index: int) -> bool:
        """Whether node ``index`` runs (started here, or by the process that wrote its pid)."""
        node = self.nodes[index]
        if node.process is not None:
            return node.process.poll() is None
        pid = _pid_of(node)
        return pid is not None and _alive(pid)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def _command(self, node: NodeProcess) -> list[str]:
        classpath = os.pathsep.join(
            [str(TARGET / "classes"), str(TARGET / "lib" / "*"), str(TARGET / "knn" / "*")])
        command = [
            java_command(), f"-Xms{self.heap}", f"-Xmx{self.heap}",
            # C1 only: on 2 shared cores C2's compile threads cost more than they save in a
            # test run (measured: the node's CPU over the real-cluster tests 17 s with C1,
            # 61 s cold and 41 s warm with C2; start to green 13-17 s instead of 38-59 s).
            "-XX:TieredStopAtLevel=1",
            # As a distribution's jvm.options: the node closes itself, log4j must not go first.
            "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true",
            "-Dio.netty.allocator.numDirectArenas=0", "-Dio.netty.noKeySetOptimization=true",
            f"-Djava.io.tmpdir={node.home / 'tmp'}",
            "-cp", classpath, MAIN_CLASS,
            "--home", str(node.home), "--node-name", node.name,
            "--cluster-name", self.cluster_name,
            "--http-port", str(node.http_port), "--transport-port", str(node.transport_port),
            "--url-file", str(node.url_file),
        ]
        if len(self.nodes) > 1:
            command += [
                "--seed-hosts", ",".join(f"127.0.0.1:{n.transport_port}" for n in self.nodes),
                "--initial-cluster-managers", ",".join(n.name for n in self.nodes),
            ]
        for setting in self.settings:
            command += ["--setting", setting]
        return command

    def start_node(self, index: int) -> None:
        """Start (or restart) one node; its data directory is kept across restarts."""
        node = self.nodes[index]
        (node.home / "tmp").mkdir(parents=True, exist_ok=True)
        node.url_file.unlink(missing_ok=True)
        with open(node.log_file, "ab") as out:
            # Its own session: the node outlives this launcher, and a Ctrl-C here is not its.
            node.process = subprocess.Popen(
                self._command(node), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        node.pid_file.write_text(f"{node.process.pid}\n")

    def start(self, timeout_s: float = 180.0) -> dict:
        """Start every node; the cluster health once green with them all."""
        for i in range(len(self.nodes)):
            self.start_node(i)
        return self.wait_green(timeout_s)

    def wait_started(self, index: int, timeout_s: float) -> None:
        node = self.nodes[index]
        deadline = time.monotonic() + timeout_s
        while not node.url_file.exists():
            if not self.running(index):
                raise RuntimeError(
                    f"{node.name} exited before it started; "
                    f"its log ({node.log_file}) ends:\n{tail(node.log_file)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not start within {timeout_s:.0f} s; its "
                                   f"log ({node.log_file}) ends:\n{tail(node.log_file)}")
            time.sleep(0.25)

    def wait_green(self, timeout_s: float = 180.0, *, nodes: int | None = None) -> dict:
        """Wait for every running node to start and the cluster to be green with them all."""
        deadline = time.monotonic() + timeout_s
        running = [i for i in range(len(self.nodes)) if self.running(i)]
        for i in running:
            self.wait_started(i, max(1.0, deadline - time.monotonic()))
        want = len(running) if nodes is None else nodes
        url = self.nodes[running[0]].url
        query = f"wait_for_status=green&wait_for_nodes={want}&timeout=5s"
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_cluster/health?{query}", timeout=10) as r:
                    health = json.load(r)
                if not health.get("timed_out") and health.get("status") == "green":
                    return health
            except (urllib.error.URLError, OSError, ValueError) as exc:
                health = {"error": str(exc)}
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster at {url} is not green with {want} node(s) "
                                   f"after {timeout_s:.0f} s: {health}")
            time.sleep(0.5)

    def stop_node(self, index: int, *, grace_s: float = 30.0) -> None:
        node = self.nodes[index]
        if node.process is not None:
            stop_pid(node.process.pid, grace_s, popen=node.process)
            node.process = None
        elif (pid := _pid_of(node)) is not None:  # started by another process (attach)
            stop_pid(pid, grace_s)
        node.pid_file.unlink(missing_ok=True)

    def kill_node(self, index: int) -> None:
        """SIGKILL: a node that dies without closing (a crash, a lost machine)."""
        node = self.nodes[index]
        if node.process is not None:
            node.process.kill()
            node.process.wait()
            node.process = None
        node.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        for i in range(len(self.nodes)):
            self.stop_node(i)


def _pid_of(node: NodeProcess) -> int | None:
    try:
        return int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A node this process started and that exited is a zombie until reaped: not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_pid(pid: int, grace_s: float, popen: subprocess.Popen | None = None) -> None:
    """SIGTERM, wait up to ``grace_s`` for the node to close, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.2)
    log(f"pid {pid} did not stop within {grace_s:.0f} s; killing it")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if popen is not None:
        popen.wait()


# ---- command line -----------------------------------------------------------------------------

def _start(args: argparse.Namespace) -> int:
    started = time.monotonic()
    build()
    built = time.monotonic()
    cluster = Cluster.create(args.dir, args.nodes, heap=args.heap, settings=args.setting)
    try:
        health = cluster.start(args.timeout)
    except Exception:
        cluster.stop()
        raise
    log(f"{health['number_of_nodes']} node(s) green in {time.monotonic() - built:.1f} s "
        f"(build {built - started:.1f} s); logs in {args.dir}; stop: {Path(__file__).name} "
        f"stop --dir {args.dir}")
    print(f"OPENSEARCH_URL={cluster.url}")
    print(f"OPENSEARCH_KNN_ENGINE={KNN_ENGINE}")
    sys.stdout.flush()
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = 0
    for pid_file in sorted(args.dir.glob("node-*/pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        stop_pid(pid, args.grace)
        pid_file.unlink(missing_ok=True)
        stopped += 1
    log(f"stopped {stopped} node(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="build if needed, start, wait for green")
    start.add_argument("--nodes", type=int, default=1, help="1 (default) or more, e.g. 3")
    start.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="data and logs (wiped)")
    start.add_argument("--heap", default="512m", help="JVM heap per node")
    start.add_argument("--timeout", type=float, default=180.0, help="seconds to green")
    start.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                       help="a node setting for every node (repeatable), e.g. "
                            "thread_pool.write.queue_size=2")
    stop = sub.add_parser("stop", help="stop the nodes started with --dir")
    stop.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    stop.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL")
    sub.add_parser("build", help="only build")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            return _start(args)
        if args.command == "stop":
            return _stop(args)
        build()
        return 0
    except RuntimeError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
