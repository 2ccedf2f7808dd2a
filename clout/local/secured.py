"""Locked-down local servers, for the security tests and for trying a secured deployment by hand:
a Kafka broker that only speaks SASL_SSL with SCRAM-SHA-512 users, and a Redis that only speaks TLS
with ACL users (the default user off). Certificates come from a throwaway CA made here.

Passwords go to the servers through files in the server's own folder (mode 0600: the broker's
config, Redis's ACL file), never on a command line that `ps` would show.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from clout.local import stack
from clout.settings import Settings

# What the pipeline sends (clout/store, clout/pipelines) and what readers send (clout/serving):
# tests/security proves both lists are enough and nothing more is allowed.
WRITER_COMMANDS = ("get", "mget", "set", "exists", "expire", "del", "unlink", "rename", "copy", "hset", "hget",
                   "hgetall", "hdel", "hkeys", "zadd", "zrem", "zrange", "zrevrange", "zcard", "zscore", "sadd",
                   "smembers", "xadd", "xtrim", "evalsha", "eval", "script|load", "script|exists", "multi", "exec",
                   "discard", "ping", "client|setname", "time",
                   # sent only when a window has flags (store/flags.py) and on a restart (pipelines/recovery.py)
                   "smismember", "hexists")
READER_COMMANDS = ("get", "mget", "hget", "hmget", "hgetall", "zrevrange", "zrange", "zscore", "zmscore", "zrevrank",
                   "zcard", "exists", "ttl", "multi", "exec", "discard", "ping", "client|setname")
# A flag subscriber (clout/serving/subscriber.py): the reader's commands, plus its consumer-group
# commands on the flag stream's key alone, in an ACL selector (Redis >= 7.0): XACK, XAUTOCLAIM and
# XGROUP CREATE need write access to the key, and XREADGROUP, though it moves the group's state, only
# read access (its key spec is RO), so without the selector it would reach any `clout:*` stream.
# The user still cannot XADD, XTRIM, DEL or destroy the group, nor write any other key.
FLAG_SUBSCRIBER_COMMANDS = ("xreadgroup", "xack", "xautoclaim", "xgroup|create")


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate clients trust
    cert: Path  # the server's certificate (SAN 127.0.0.1, localhost)
    key: Path  # its unencrypted PKCS#8 key
    bundle: Path  # key + certificate in one PEM (Kafka's PEM keystore)


def make_certificates(folder: Path) -> Certificates:
    """A throwaway CA and a loopback server certificate signed by it, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clout throwaway test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(san, critical=False).sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    out = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "server-bundle.pem")
    out.ca.write_bytes(ca.public_bytes(pem))
    out.cert.write_bytes(cert.public_bytes(pem))
    _private(out.key, key_pem)
    _private(out.bundle, key_pem + cert.public_bytes(pem))
    return out


def _private(path: Path, content: bytes | str) -> None:
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


@dataclass
class Server:
    """A started server process; stop() ends it (and only it)."""

    name: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _kafka_properties(port: int, controller_port: int, data: Path, certs: Certificates, admin_password: str) -> str:
    jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" '
            f'password="{admin_password}";')
    return "\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER", "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM", f"ssl.keystore.location={certs.bundle}",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={certs.ca}",
        f"log.dirs={data}", "num.partitions=6", "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=6", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false", "log.retention.ms=-1", ""])


def start_kafka(settings: Settings, home: Path, port: int, controller_port: int, certs: Certificates,
                users: dict[str, str]) -> Server:
    """A KRaft broker whose only client listener is SASL_SSL; `users` (name -> password) are its
    SCRAM-SHA-512 users, created at format time (the first is also the inter-broker user, `admin`)."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    _private(config, _kafka_properties(port, controller_port, home / "data", certs, users["admin"]))
    scram = [arg for name, password in users.items()
             for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
    fmt = stack._java(settings, home, "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t",
                      stack._cluster_id(home), "-c", str(config))
    # StorageTool takes SCRAM users only as arguments: visible to `ps` for the second the format runs.
    stack._run([*fmt, *scram], "formatting the secured Kafka storage")
    log = home / "kafka.out"
    with open(log, "ab") as out:
        process = subprocess.Popen(stack._java(settings, home, "kafka.Kafka", str(config)), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Server("kafka-sasl-ssl", process, log)


def start_redis(home: Path, port: int, certs: Certificates, users: dict[str, tuple[str, str]]) -> Server:
    """Redis on TLS only (`--port 0`), default user off; `users` name -> (password, ACL rules)."""
    home.mkdir(parents=True, exist_ok=True)
    acl = home / "users.acl"
    _private(acl, "user default off\n" + "".join(f"user {name} on >{password} {rules}\n"
                                                   for name, (password, rules) in users.items()))
    command = [stack.install_redis(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
               "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key),
               "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no", "--aclfile", str(acl),
               "--save", "", "--appendonly", "no", "--dir", str(home), "--daemonize", "no"]
    log = home / "redis.out"
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return Server("redis-tls-acl", process, log)


def writer_rules(prefix: str) -> str:
    return f"resetkeys ~{prefix}:* resetchannels -@all " + " ".join(f"+{c}" for c in WRITER_COMMANDS)


def reader_rules(prefix: str) -> str:
    return f"resetkeys %R~{prefix}:* resetchannels -@all " + " ".join(f"+{c}" for c in READER_COMMANDS)


def flag_subscriber_rules(prefix: str) -> str:
    """Read-only on `<prefix>:*` like the reader, plus a selector: FLAG_SUBSCRIBER_COMMANDS on the
    flag stream only."""
    from clout.store.layout import KeyLayout

    stream = KeyLayout(prefix).flag_stream()
    return f"{reader_rules(prefix)} (~{stream} " + " ".join(f"+{c}" for c in FLAG_SUBSCRIBER_COMMANDS) + ")"


def wait_for_port(server: Server, port: int, timeout: float = 90.0) -> None:
    """Until something accepts on the port (the caller then checks it answers properly)."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise stack.StackError(f"{server.name} exited ({server.process.returncode}); see {server.log}:\n"
                                   + stack._tail(server.log))
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise stack.StackError(f"{server.name} did not listen on {port} within {timeout:.0f}s; see {server.log}")
