"""`gpulens elk-setup`: install the ILM policy, the index template and the Kibana saved objects. Idempotent.

    gpulens elk-setup --elasticsearch-url https://es:9200 --kibana-url https://kibana:5601 --api-key-file /secrets/key

Elasticsearch: PUT _ilm/policy/gpulens-logs and PUT _index_template/gpulens-logs (a PUT replaces, so
a re-run converges). Kibana: POST /api/saved_objects/_import?overwrite=true with the ndjson as the
multipart `file` and the `kbn-xsrf` header Kibana demands of every write.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpulens import elk, logs
from gpulens.config import ConfigError, opt
from gpulens.exporters.logship.config import LogshipConfig, redact


@dataclass(frozen=True)
class ElkSetupConfig:
    """`gpulens elk-setup`: ILM policy, index template and Kibana saved objects for the gpulens data streams."""

    elasticsearch_url: str = opt("http://127.0.0.1:9200", "Elasticsearch URL(s), comma-separated.")
    kibana_url: str = opt("", "Kibana URL (with its base path); empty skips the saved objects.")
    kibana_space: str = opt("", "Kibana space to import into; empty for the default space.")
    api_key_file: str = opt("", "File holding an API key (used for Elasticsearch and Kibana), or GPULENS_ELASTICSEARCH_API_KEY.")
    username: str = opt("", "Basic-auth user; the password from --password-file or GPULENS_ELASTICSEARCH_PASSWORD.")
    password_file: str = opt("", "File holding the basic-auth password.")
    ca_file: str = opt("", "PEM CA bundle for Elasticsearch's and Kibana's TLS certificates.")
    ilm: bool = opt(True, "Install the ILM policy and point the template at it (off for clusters without ILM).")
    retention_days: int = opt(30, "Delete backing indices this many days after rollover.", minimum=1)
    request_timeout_seconds: float = opt(30.0, "Timeout of each request.", minimum=0.1)
    log_level: str = opt("info", "Log level.", choices=("debug", "info", "warning", "error"))


def _es_kwargs(cfg: ElkSetupConfig) -> dict[str, Any]:
    from gpulens.exporters.logship.shipper import client_kwargs

    shipper_cfg = LogshipConfig(elasticsearch_url=cfg.elasticsearch_url, api_key_file=cfg.api_key_file, username=cfg.username,
                                password_file=cfg.password_file, ca_file=cfg.ca_file,
                                request_timeout_seconds=cfg.request_timeout_seconds)
    kwargs = client_kwargs(shipper_cfg)
    kwargs["max_retries"] = 3  # setup requests are idempotent PUTs: the client may retry them
    kwargs.pop("retry_on_status")
    return kwargs


def setup_elasticsearch(cfg: ElkSetupConfig, es: Any, log: logging.Logger) -> None:
    """PUT the ILM policy (when enabled) and the index template; raises the client's ApiError on refusal."""
    if cfg.ilm:
        es.ilm.put_lifecycle(name=elk.ILM_POLICY, policy=elk.ilm_policy(cfg.retention_days)["policy"])
        log.info(f"ILM policy {elk.ILM_POLICY} installed (delete after {cfg.retention_days}d)")
    es.indices.put_index_template(name=elk.INDEX_TEMPLATE, body=elk.index_template(ilm=cfg.ilm))
    log.info(f"index template {elk.INDEX_TEMPLATE} installed for logs-gpulens-*")


def multipart(field: str, filename: str, content: bytes, boundary: str) -> bytes:
    """A multipart/form-data body with one file part, as a browser's upload form sends it."""
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/ndjson\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()


def _auth_header(kwargs: Mapping[str, Any]) -> dict[str, str]:
    if "api_key" in kwargs:
        return {"Authorization": f"ApiKey {kwargs['api_key']}"}
    if "basic_auth" in kwargs:
        user, password = kwargs["basic_auth"]
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def import_saved_objects(cfg: ElkSetupConfig, headers: Mapping[str, str], log: logging.Logger) -> dict[str, Any]:
    """POST the ndjson to Kibana's import API (overwrite: re-running replaces our objects); returns Kibana's answer."""
    space = f"/s/{cfg.kibana_space}" if cfg.kibana_space else ""
    url = cfg.kibana_url.rstrip("/") + space + "/api/saved_objects/_import?overwrite=true"
    boundary = "gpulens-" + uuid.uuid4().hex
    body = multipart("file", elk.SAVED_OBJECTS.name, elk.SAVED_OBJECTS.read_bytes(), boundary)
    request = urllib.request.Request(url, data=body, method="POST", headers={
        **headers, "kbn-xsrf": "true", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    context = ssl.create_default_context(cafile=cfg.ca_file or None) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=cfg.request_timeout_seconds, context=context) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"Kibana import answered {err.code}: {err.read()[:500].decode('utf-8', 'replace')}") from err
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(f"Kibana at {redact(cfg.kibana_url)} unreachable: {err}") from err
    if not answer.get("success"):
        raise RuntimeError(f"Kibana import failed: {json.dumps(answer.get('errors', answer))[:1000]}")
    log.info(f"Kibana saved objects imported: {answer.get('successCount')} objects")
    return answer


def run(cfg: ElkSetupConfig, log: logging.Logger, es: Any = None) -> int:
    """0 when every object is installed; 1 (with the refusal logged) when Elasticsearch or Kibana refused."""
    kwargs = _es_kwargs(cfg)
    if es is None:
        try:
            import elasticsearch
        except ImportError as err:
            raise ConfigError(["elasticsearch client not installed: pip install 'gpulens[elk]'"]) from err
        es = elasticsearch.Elasticsearch(**kwargs)
    try:
        setup_elasticsearch(cfg, es, log)
        if cfg.kibana_url:
            import_saved_objects(cfg, _auth_header(kwargs), log)
    except Exception as err:  # noqa: BLE001 - any refusal: one line naming it, exit 1
        log.error(f"elk setup failed: {type(err).__name__}: {str(err)[:1000]}")
        return 1
    return 0


def main(cfg: ElkSetupConfig) -> int:
    return run(cfg, logs.setup(cfg.log_level, "gpulens-elk-setup", stream=sys.stderr))
