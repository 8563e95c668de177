"""`gpulens logship` settings: flags, GPULENS_* variables and YAML keys come from these fields.

Secrets are never fields (a flag shows in `ps`, a config dump in a bug report): the API key and the
password come from files (`api_key_file`, `password_file`) or from GPULENS_ELASTICSEARCH_API_KEY /
GPULENS_ELASTICSEARCH_PASSWORD, read once when the client is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpulens.config import ConfigError, opt

API_KEY_ENV = "GPULENS_ELASTICSEARCH_API_KEY"
PASSWORD_ENV = "GPULENS_ELASTICSEARCH_PASSWORD"
_NAMESPACE = re.compile(r"[a-z0-9_.]{1,100}")  # data stream namespace rules, minus '-' (it separates the parts)


@dataclass(frozen=True)
class LogshipConfig:
    """`gpulens logship`: ship ECS JSON lines (stdin or a file) to an Elasticsearch data stream."""

    elasticsearch_url: str = opt("http://127.0.0.1:9200", "Elasticsearch URL(s), comma-separated.")
    namespace: str = opt("default", "Data stream namespace: events go to logs-gpulens-<namespace>.")
    api_key_file: str = opt("", "File holding an Elasticsearch API key (base64 id:key), or set GPULENS_ELASTICSEARCH_API_KEY.")
    username: str = opt("", "Basic-auth user; the password from --password-file or GPULENS_ELASTICSEARCH_PASSWORD.")
    password_file: str = opt("", "File holding the basic-auth password.")
    ca_file: str = opt("", "PEM CA bundle to verify Elasticsearch's TLS certificate.")
    request_timeout_seconds: float = opt(30.0, "Timeout of one bulk request.", minimum=0.1)
    batch_events: int = opt(2000, "Most events in one bulk request.", minimum=1, maximum=100000)
    batch_bytes: int = opt(5 * 1024 * 1024, "Most bytes of events in one bulk request.", minimum=1024)
    flush_interval_seconds: float = opt(1.0, "How often an idle shipper looks for new events.", minimum=0.01)
    queue_events: int = opt(10000, "In-memory queue in front of the spool; the oldest event is dropped when it is full.",
                            minimum=1)
    spool_dir: str = opt("", "Directory of the disk spool (survives restarts); empty keeps events in memory only.")
    spool_max_bytes: int = opt(1024 * 1024 * 1024, "Spool size cap; past it the oldest events are dropped and counted.",
                               minimum=64 * 1024)
    dead_letter_file: str = opt("", "JSON-lines file for events Elasticsearch rejected (400/403/413, mapping errors); "
                                    "default <spool_dir>/dead-letter.ndjson, or none in memory-only mode.")
    backoff_max_seconds: float = opt(30.0, "Cap of the exponential backoff between retries.", minimum=0.01)
    max_item_attempts: int = opt(50, "Deliveries of one event answered 429/5xx before it is dead-lettered "
                                     "(whole-request failures, such as an outage, retry without limit).", minimum=1)
    input: str = opt("-", "ECS JSON lines to ship: a file, or '-' for stdin.")
    drain_timeout_seconds: float = opt(30.0, "At end of input or SIGTERM, how long to wait for the queue to drain.",
                                       minimum=0.0)
    listen_address: str = opt("0.0.0.0", "Address of the shipper's /metrics server.")
    port: int = opt(9448, "Port of the shipper's /metrics server (0: any free port).", minimum=0, maximum=65535)
    log_level: str = opt("info", "Log level.", choices=("debug", "info", "warning", "error"))

    def __post_init__(self) -> None:
        problems = []
        if not _NAMESPACE.fullmatch(self.namespace):
            problems.append(f"namespace: {self.namespace!r} is not a data stream namespace "
                            "(allowed: lowercase letters, digits, '_' and '.', at most 100)")
        if not all(u.strip().startswith(("http://", "https://")) for u in self.elasticsearch_url.split(",")):
            problems.append(f"elasticsearch_url: {redact(self.elasticsearch_url)!r} is not a list of http(s):// URLs")
        if self.password_file and not self.username:
            problems.append("password_file: set username too (basic auth)")
        if problems:
            raise ConfigError(problems)

    @property
    def data_stream(self) -> str:
        return f"logs-gpulens-{self.namespace}"


def redact(urls: str) -> str:
    """URLs with any user:password@ removed, for messages."""
    return re.sub(r"//[^/@]*@", "//***@", urls)
