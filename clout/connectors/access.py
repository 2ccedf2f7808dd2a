"""Fail at once, and say why, when Kafka refuses clout's credentials.

kafka-python treats a refused SASL login like a lost connection: it logs the broker's answer and
retries until its bootstrap times out (30 s), then reports only "Unable to bootstrap". Commands
that talk to Kafka check first: one bootstrap, watched for the broker's authentication error.
"""

from __future__ import annotations

import logging
import threading

from clout.settings import Settings

BOOTSTRAP_TIMEOUT_S = 30.0


class KafkaAccessError(RuntimeError):
    """Kafka cannot be used with these settings; the message names the setting to look at."""


class _AuthFailures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.failed = threading.Event()
        self.reason = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "SaslAuthenticationFailed" in message or "SSL: CERTIFICATE_VERIFY_FAILED" in message:
            self.reason = message.split("Error: ", 1)[-1][:300]
            self.failed.set()


def check_kafka_access(settings: Settings, timeout_s: float = BOOTSTRAP_TIMEOUT_S) -> None:
    """Connect once with the settings' security; raise KafkaAccessError on refused credentials or
    an untrusted certificate as soon as the broker says so, or when nothing answers in time."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    watcher = _AuthFailures()
    logger = logging.getLogger("kafka")
    logger.addHandler(watcher)
    outcome: list[BaseException | None] = []

    def bootstrap() -> None:
        try:
            KafkaAdminClient(**settings.kafka_client_config(), request_timeout_ms=int(timeout_s * 1000)).close()
            outcome.append(None)
        except (KafkaError, OSError, ValueError) as error:
            outcome.append(error)
        watcher.failed.set()

    threading.Thread(target=bootstrap, daemon=True, name="kafka-access-check").start()
    try:
        watcher.failed.wait(timeout_s + 5)
    finally:
        logger.removeHandler(watcher)
    where = f"{settings.kafka_bootstrap} ({settings.kafka_security_protocol}"
    where += f", {settings.kafka_sasl_mechanism} user {settings.kafka_sasl_username!r})" \
        if settings.kafka_sasl_mechanism else ")"
    if watcher.reason:
        raise KafkaAccessError(f"Kafka at {where} refused the connection: {watcher.reason}; check "
                               "kafka_sasl_username, kafka_sasl_password and kafka_ssl_cafile")
    if not outcome or outcome[0] is not None:
        raise KafkaAccessError(f"Kafka at {where} did not answer within {timeout_s:.0f} s"
                               + (f": {outcome[0]}" if outcome and outcome[0] else ""))
