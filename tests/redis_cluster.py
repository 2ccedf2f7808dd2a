"""A real 3-master Redis Cluster on loopback ports, for the tests: Debian's redis-server three times
with `--cluster-enabled yes`, joined by `redis-cli --cluster create` (no replicas)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from clout.local.stack import install_redis

MASTERS = 3


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0, gone: subprocess.Popen | None = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline or (gone is not None and gone.poll() is not None):
            tail = log.read_text()[-1500:] if log is not None and log.exists() else ""
            raise RuntimeError(f"the test Redis Cluster did not come up: {what}\n{tail}")
        time.sleep(0.1)


def bus_port(port: int) -> int:
    """The node's cluster bus port: below the kernel's ephemeral range (32768-60999), where Redis's
    default (port + 10000) would lie and a client connection's local port can take it first."""
    return port - 10000


def _node(port: int, home: Path) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    command = [install_redis(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(home),
               "--cluster-enabled", "yes", "--cluster-port", str(bus_port(port)),
               "--cluster-config-file", str(home / "nodes.conf"),
               "--cluster-node-timeout", "5000", "--daemonize", "no", "--save", "", "--appendonly", "no",
               "--logfile", str(home / "redis.log")]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _create(ports: list[int]) -> None:
    cli = shutil.which("redis-cli") or str(Path(install_redis()).with_name("redis-cli"))
    nodes = [f"127.0.0.1:{port}" for port in ports]
    done = subprocess.run([cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def _pings(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        info = client.cluster("info")
        return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == MASTERS
    finally:
        client.close()


@contextmanager
def running_cluster(first_port: int, home: Path) -> Iterator[str]:
    """Start the cluster on `first_port` .. `first_port + 2` (bus ports + 10000), yield its
    `redis+cluster://` URL, stop every node afterwards."""
    ports = [first_port + i for i in range(MASTERS)]
    shutil.rmtree(home, ignore_errors=True)
    nodes = [_node(port, home / str(port)) for port in ports]
    try:
        for port, node in zip(ports, nodes, strict=True):
            _wait(lambda port=port: _pings(port), f"port {port}", gone=node, log=home / str(port) / "redis.log")
        _create(ports)
        for port in ports:
            _wait(lambda port=port: _cluster_ok(port), f"cluster state on port {port}")
        yield f"redis+cluster://127.0.0.1:{ports[0]}/0"
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        shutil.rmtree(home, ignore_errors=True)
