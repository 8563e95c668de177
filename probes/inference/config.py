"""`gpulens probe` settings (flags, GPULENS_* variables, YAML keys) and the target list loader.

The command's own settings are the `ProbeConfig` fields; the targets live in their own YAML file
(`--targets-file`), loaded by `load_targets`, which reports every problem at once, one line each,
naming the target and the key:

    targets:
      - name: classifier              # the `target` label; defaults to the model name
        url: http://classifier-predictor.models:8080
        model: classifier
        protocol: v2                  # v1 | v2 | openai
        payload: metadata             # inline JSON | payload_file | "metadata" (random tensor from v2 metadata)
        expect: {status: 200, outputs: [{name: output-0, datatype: FP32, shape: [-1, 4], min: 0, max: 1}]}
        interval_seconds: 15          # per-target overrides of the command's defaults
        timeout_seconds: 5
        connection: persistent        # persistent | cold
      - {name: chat, url: http://llm:8080, model: llm, protocol: openai, openai: {endpoint: chat, prompt: hi, max_tokens: 16}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from gpulens.config import ConfigError, opt

PROTOCOLS = ("v1", "v2", "openai")
CONNECTIONS = ("persistent", "cold")
OPENAI_ENDPOINTS = ("chat", "completions")
TARGET_KEYS = ("name", "url", "model", "protocol", "payload", "payload_file", "expect", "interval_seconds",
               "timeout_seconds", "connection", "headers", "tls_verify", "ca_file", "openai")
EXPECT_KEYS = ("status", "outputs")
OUTPUT_KEYS = ("name", "datatype", "shape", "min", "max")
OPENAI_KEYS = ("endpoint", "prompt", "max_tokens", "prefix")


@dataclass(frozen=True)
class ProbeConfig:
    """`gpulens probe`: synthetic v1/v2/OpenAI inference requests with phases, spans and exemplars."""

    listen_address: str = opt("0.0.0.0", "Address to bind the metrics server to.")
    port: int = opt(9447, "Port for /metrics, /healthz and /readyz.", minimum=0, maximum=65535)
    web_config_file: str = opt("", "Prometheus exporter-toolkit web-config.yml for TLS and basic auth.")
    targets_file: str = opt("", "YAML file with the `targets:` list to probe (see the README).")
    interval_seconds: float = opt(15.0, "Default time between two probes of a target.", minimum=0.05)
    jitter: float = opt(0.1, "Spread of each interval, as a fraction of it (±), so targets do not probe in step.",
                        minimum=0.0, maximum=0.5)
    timeout_seconds: float = opt(5.0, "Default time limit of one probe, connect to decode.", minimum=0.001)
    connection: str = opt("persistent", "Default connection reuse between probes.", choices=CONNECTIONS)
    discover: bool = opt(False, "Also probe every InferenceService found through the Kubernetes API (KServe exporter's discovery).")
    discover_namespaces: str = opt("", "Namespaces to discover in, comma-separated (empty: all the service account may list).")
    discover_selector: str = opt("", "Label selector for discovered InferenceServices.")
    discover_interval_seconds: float = opt(60.0, "How often to re-list InferenceServices.", minimum=1.0)
    kubeconfig: str = opt("", "kubeconfig for discovery outside a cluster (in a pod: the service account).")
    otlp_endpoint: str = opt("", "OTLP endpoint for spans: host:4317 (grpc) or http://host:4318/v1/traces (http); empty: no export.")
    otlp_protocol: str = opt("grpc", "OTLP transport.", choices=("grpc", "http"))
    otlp_headers: str = opt("", "Extra OTLP headers, 'key=value,key2=value2' (e.g. an auth token).")
    otlp_insecure: bool = opt(True, "gRPC OTLP without TLS (Jaeger's default 4317 listener).")
    otlp_timeout_seconds: float = opt(5.0, "Time limit of one span export; exports run on their own thread.", minimum=0.1)
    service_name: str = opt("gpulens-probe", "OpenTelemetry service.name of the probe's spans.")
    log_level: str = opt("info", "Log level.", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class OutputExpectation:
    name: str = ""
    datatype: str = ""
    shape: tuple[int, ...] | None = None  # -1 matches any size
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Target:
    """One thing to probe; `payload` is the parsed JSON body, or None to generate it from v2 metadata."""

    name: str
    url: str
    model: str
    protocol: str
    payload: Any = None
    interval_seconds: float = 15.0
    timeout_seconds: float = 5.0
    connection: str = "persistent"
    headers: tuple[tuple[str, str], ...] = ()
    tls_verify: bool = True
    ca_file: str = ""
    expect_status: int = 200
    expect_outputs: tuple[OutputExpectation, ...] = ()
    expect_from_metadata: bool = False  # payload "metadata": check outputs against the model's metadata
    openai_endpoint: str = "chat"
    prompt: str = "Say hello."
    max_tokens: int = 16
    openai_prefix: str = "/openai"  # KServe's KSERVE_OPENAI_ROUTE_PREFIX; "" for vLLM's /v1/...
    labels: dict[str, str] = field(default_factory=dict, compare=False)  # discovery: namespace etc. (not exported)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expectations(where: str, raw: Any, problems: list[str]) -> tuple[int, tuple[OutputExpectation, ...]]:
    if raw is None:
        return 200, ()
    if not isinstance(raw, dict):
        problems.append(f"{where}.expect: expected a mapping (allowed keys: {', '.join(EXPECT_KEYS)})")
        return 200, ()
    for key in raw:
        if key not in EXPECT_KEYS:
            problems.append(f"{where}.expect: unknown key '{key}' (allowed: {', '.join(EXPECT_KEYS)})")
    status = raw.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        problems.append(f"{where}.expect.status: {status!r} is not an HTTP status (100-599)")
        status = 200
    outputs = []
    for i, out in enumerate(raw.get("outputs") or []):
        here = f"{where}.expect.outputs[{i}]"
        if not isinstance(out, dict):
            problems.append(f"{here}: expected a mapping (allowed keys: {', '.join(OUTPUT_KEYS)})")
            continue
        for key in out:
            if key not in OUTPUT_KEYS:
                problems.append(f"{here}: unknown key '{key}' (allowed: {', '.join(OUTPUT_KEYS)})")
        shape = out.get("shape")
        if shape is not None and not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
            problems.append(f"{here}.shape: {shape!r} is not a list of integers (-1 for any size)")
            shape = None
        for key in ("min", "max"):
            if key in out and not _number(out[key]):
                problems.append(f"{here}.{key}: {out[key]!r} is not a number")
        outputs.append(OutputExpectation(str(out.get("name", "")), str(out.get("datatype", "")),
                                         tuple(shape) if shape is not None else None,
                                         out["min"] if _number(out.get("min")) else None,
                                         out["max"] if _number(out.get("max")) else None))
    return status, tuple(outputs)


def parse_targets(data: Any, cfg: ProbeConfig, source: str = "targets") -> list[Target]:
    """Validate the parsed YAML (`{targets: [...]}`) into Targets; ConfigError lists every problem."""
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list) or set(data) - {"targets"}:
        raise ConfigError([f"{source}: expected a mapping with one key 'targets' holding a list of targets"])
    problems: list[str] = []
    targets: list[Target] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["targets"]):
        where = f"{source}: targets[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a mapping (allowed keys: {', '.join(TARGET_KEYS)})")
            continue
        before = len(problems)
        for key in raw:
            if key not in TARGET_KEYS:
                problems.append(f"{where}: unknown key '{key}' (allowed: {', '.join(TARGET_KEYS)})")
        for key in ("url", "model", "protocol"):
            if not raw.get(key):
                problems.append(f"{where}: missing key '{key}'")
        url, protocol = str(raw.get("url", "")), raw.get("protocol", "")
        if url and not url.startswith(("http://", "https://")):
            problems.append(f"{where}.url: {url!r} must start with http:// or https://")
        if protocol and protocol not in PROTOCOLS:
            problems.append(f"{where}.protocol: {protocol!r} is not allowed (allowed: {', '.join(PROTOCOLS)})")
        connection = raw.get("connection", cfg.connection)
        if connection not in CONNECTIONS:
            problems.append(f"{where}.connection: {connection!r} is not allowed (allowed: {', '.join(CONNECTIONS)})")
        numbers = {}
        for key, default in (("interval_seconds", cfg.interval_seconds), ("timeout_seconds", cfg.timeout_seconds)):
            value = raw.get(key, default)
            if not _number(value) or value <= 0:
                problems.append(f"{where}.{key}: {value!r} is not a positive number")
            numbers[key] = float(value) if _number(value) else default
        headers = raw.get("headers") or {}
        if not isinstance(headers, dict):
            problems.append(f"{where}.headers: expected a mapping of header names to values")
            headers = {}
        payload: Any = raw.get("payload")
        from_metadata = payload == "metadata"
        if "payload" in raw and "payload_file" in raw:
            problems.append(f"{where}: give one of 'payload' and 'payload_file', not both")
        elif "payload_file" in raw:
            try:
                with open(str(raw["payload_file"]), encoding="utf-8") as fh:
                    payload = json.load(fh)
            except OSError as err:
                problems.append(f"{where}.payload_file: {raw['payload_file']}: {err.strerror}")
            except json.JSONDecodeError as err:
                problems.append(f"{where}.payload_file: {raw['payload_file']}: not valid JSON: {err}")
        elif from_metadata:
            payload = None
        elif isinstance(payload, str):
            problems.append(f"{where}.payload: {payload!r} is not allowed (a JSON object, or 'metadata' to generate one)")
        elif payload is None and protocol in ("v1", "v2"):
            problems.append(f"{where}: missing key 'payload' (a JSON object, 'metadata', or use 'payload_file')")
        status, outputs = _expectations(where, raw.get("expect"), problems)
        openai = raw.get("openai") or {}
        if not isinstance(openai, dict):
            problems.append(f"{where}.openai: expected a mapping (allowed keys: {', '.join(OPENAI_KEYS)})")
            openai = {}
        for key in openai:
            if key not in OPENAI_KEYS:
                problems.append(f"{where}.openai: unknown key '{key}' (allowed: {', '.join(OPENAI_KEYS)})")
        endpoint = openai.get("endpoint", "chat")
        if endpoint not in OPENAI_ENDPOINTS:
            problems.append(f"{where}.openai.endpoint: {endpoint!r} is not allowed (allowed: {', '.join(OPENAI_ENDPOINTS)})")
        max_tokens = openai.get("max_tokens", 16)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            problems.append(f"{where}.openai.max_tokens: {max_tokens!r} is not a positive integer")
        name = str(raw.get("name") or raw.get("model") or "")
        if name and name in seen:
            problems.append(f"{where}.name: {name!r} is used by another target (names label the series)")
        seen.add(name)
        if len(problems) > before:
            continue
        targets.append(Target(
            name=name, url=url.rstrip("/"), model=str(raw["model"]), protocol=str(protocol), payload=payload,
            interval_seconds=numbers["interval_seconds"], timeout_seconds=numbers["timeout_seconds"],
            connection=str(connection), headers=tuple((str(k), str(v)) for k, v in headers.items()),
            tls_verify=bool(raw.get("tls_verify", True)), ca_file=str(raw.get("ca_file", "")),
            expect_status=status, expect_outputs=outputs, expect_from_metadata=from_metadata and not outputs,
            openai_endpoint=str(endpoint), prompt=str(openai.get("prompt", "Say hello.")), max_tokens=int(max_tokens),
            openai_prefix=str(openai.get("prefix", "/openai")).rstrip("/"),
        ))
    if problems:
        raise ConfigError(problems)
    return targets


def load_targets(path: str, cfg: ProbeConfig) -> list[Target]:
    """Read and validate a targets file; ConfigError names the file and every bad key."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as err:
        raise ConfigError([f"targets file {path}: {err.strerror}"]) from err
    except yaml.YAMLError as err:
        raise ConfigError([f"targets file {path}: not valid YAML: {str(err).splitlines()[0]}"]) from err
    return parse_targets(data, cfg, f"targets file {path}")
