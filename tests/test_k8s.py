"""The kustomize base in k8s/: it builds, core kinds pass strict schema validation, it agrees with the code.

A renamed flag or GPULENS_* variable, a moved port or socket, or a selector typo would otherwise ship a
DaemonSet that starts but exports nothing (GPULENS_* keys the config does not know are ignored silently).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gpulens import config
from gpulens.exporters.gpu.config import GpuExporterConfig
from gpulens.metrics import gpu as catalogue
from gpulens.webconfig import load_web_config
from tests.tools import require_tool

K8S = Path(__file__).resolve().parent.parent / "k8s"
NAMESPACE = "gpulens"
KUBERNETES_VERSION = "1.32.0"  # oldest release targeted; kubernetes-validate ships the schemas
CRD_API_GROUPS = ("monitoring.coreos.com/",)  # no schema offline: checked field by field below
FIELDS = {f.name: f for f in dataclasses.fields(GpuExporterConfig)}
FLAGS = {"--" + name.replace("_", "-") for name in FIELDS}
# A long flag in text, but not node_exporter's dotted --web.config.file named in a comment.
_FLAG_IN_TEXT = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?![\w.-])")
_ENV_IN_TEXT = re.compile(r"\b(" + config.ENV_PREFIX + r"[A-Z0-9_]+)")


@pytest.fixture(scope="module")
def kubectl() -> str:
    """The real kubectl (kustomize built in); a skip on a laptop, a failure under CI=true."""
    return require_tool("kubectl")


def _build(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def docs(kubectl: str) -> list[dict[str, Any]]:
    return _build(kubectl, K8S)


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _one(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return container


def _load_from_container(container: dict[str, Any]) -> GpuExporterConfig:
    """The config the exporter would start with: the container's GPULENS_* env and flags, via config.load."""
    args = container["args"]
    assert args[0] == "gpu-exporter", "the image's entrypoint is `gpulens`; args start with the subcommand"
    flags: dict[str, str] = {}
    for arg in args[1:]:
        name, eq, value = arg.partition("=")
        assert name in FLAGS, f"{name} is not a `gpulens gpu-exporter` flag (allowed: {sorted(FLAGS)})"
        assert eq, f"write {arg} as {name}=VALUE so this test can check the value"
        flags[name[2:].replace("-", "_")] = value
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return config.load(GpuExporterConfig, env=env, flags=flags)


def _manifest_texts() -> Iterator[tuple[Path, str]]:
    """Every YAML file in k8s/, comments included: the examples and patches not in the default build too."""
    for path in sorted(K8S.rglob("*.yaml")):
        yield path, path.read_text(encoding="utf-8")


def test_builds_the_exporter_objects_in_one_namespace(docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["DaemonSet", "Namespace", "Service", "ServiceAccount", "ServiceMonitor"]
    assert _one(docs, "Namespace")["metadata"]["name"] == NAMESPACE
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gpulens", doc["kind"]


def test_core_kinds_pass_strict_schema_validation(docs: list[dict[str, Any]]) -> None:
    core = [d for d in docs if not d["apiVersion"].startswith(CRD_API_GROUPS)]
    assert {d["kind"] for d in core} == {"DaemonSet", "Namespace", "Service", "ServiceAccount"}
    for doc in core:
        # Raises ValidationError on a wrong type or, with strict, a misspelt field.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_container_port_is_the_exporters_default(docs: list[dict[str, Any]]) -> None:
    (port,) = _container(docs)["ports"]
    assert port["containerPort"] == GpuExporterConfig().port == 9445
    assert port["name"] == "metrics"
    (svc_port,) = _one(docs, "Service")["spec"]["ports"]
    assert svc_port == {"name": "metrics", "port": 9445, "targetPort": "metrics", "protocol": "TCP"}


def test_every_gpulens_env_var_in_the_manifests_is_a_config_field() -> None:
    seen = set()
    for path, text in _manifest_texts():
        for var in _ENV_IN_TEXT.findall(text):
            seen.add(var)
            key = var[len(config.ENV_PREFIX):].lower()
            assert key in FIELDS, f"{path.name}: {var} is not a GpuExporterConfig field ({sorted(FIELDS)})"
    assert "GPULENS_LOG_LEVEL" in seen


def test_every_flag_in_the_manifests_is_a_real_flag() -> None:
    seen = set()
    for path, text in _manifest_texts():
        for flag in _FLAG_IN_TEXT.findall(text):
            seen.add(flag)
            assert flag in FLAGS, f"{path.name}: {flag} is not a `gpulens gpu-exporter` flag"
    # The comments name these; the test is only useful if it sees them.
    assert {"--compat", "--web-config-file", "--processes"} <= seen


def test_the_container_env_and_args_load_as_config(docs: list[dict[str, Any]]) -> None:
    container = _container(docs)
    cfg = _load_from_container(container)
    assert cfg.log_level == "info"
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"


def test_probes_hit_healthz_and_readyz_on_the_metrics_port(docs: list[dict[str, Any]]) -> None:
    container = _container(docs)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_pod_resources_socket_is_mounted_read_only(docs: list[dict[str, Any]]) -> None:
    pod = _one(docs, "DaemonSet")["spec"]["template"]["spec"]
    socket_dir = posixpath.dirname(GpuExporterConfig().podresources_socket)
    (volume,) = [v for v in pod["volumes"] if "hostPath" in v]
    assert volume["hostPath"]["path"] == socket_dir == "/var/lib/kubelet/pod-resources"
    (mount,) = [m for m in _container(docs)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": socket_dir, "readOnly": True}


def test_pod_is_locked_down_and_scheduled_on_gpu_nodes(docs: list[dict[str, Any]]) -> None:
    ds = _one(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}
    assert ds["spec"]["updateStrategy"] == rolling
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["hostPID"] is False and GpuExporterConfig().processes is False  # --processes needs hostPID
    assert pod["automountServiceAccountToken"] is False
    required = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (term,) = required["nodeSelectorTerms"]
    gpu_present = {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
    assert term["matchExpressions"] == [gpu_present]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    container = _container(docs)
    assert container["image"] == "ghcr.io/gpulens/gpulens:0.1.0"
    assert container["resources"] == {
        "requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"},  # no CPU limit
    }
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
    }
    sa = _one(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["automountServiceAccountToken"] is False


def test_service_selects_the_daemonset_pods(docs: list[dict[str, Any]]) -> None:
    ds = _one(docs, "DaemonSet")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    svc = _one(docs, "Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True  # an NVML outage must still be scraped (_up 0)
    assert svc["spec"]["selector"] and svc["spec"]["selector"].items() <= pod_labels.items()


def test_service_monitor_selects_the_service_and_its_port(docs: list[dict[str, Any]]) -> None:
    # No CRD schema offline (kubernetes-validate says "Couldn't find schema", exit 0): check the fields.
    sm, svc = _one(docs, "ServiceMonitor"), _one(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"]  # no namespaceSelector: its own
    assert set(sm["spec"]) == {"selector", "endpoints"}
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"], endpoint["honorLabels"]) == ("15s", "10s", False)
    relabel = endpoint["relabelings"]
    for target in ("node", "instance"):
        assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": target,
                "action": "replace"} in relabel


def test_service_monitor_keeps_the_workload_pod_labels(docs: list[dict[str, Any]]) -> None:
    """The exporter's own namespace/pod/container target labels are dropped, or with honorLabels false the
    attributed workload's labels would arrive as exported_namespace, exported_pod, exported_container."""
    (endpoint,) = _one(docs, "ServiceMonitor")["spec"]["endpoints"]
    drops = [r["regex"] for r in endpoint["relabelings"] if r.get("action") == "labeldrop"]
    for label in catalogue.POD:
        assert any(re.fullmatch(rx, label) for rx in drops), f"target label {label!r} would clash"
    for label in ("node", "instance", "job"):
        assert not any(re.fullmatch(rx, label) for rx in drops), label


def test_dcgm_compat_patch_applies_as_an_overlay(kubectl: str, tmp_path: Path) -> None:
    shutil.copy(K8S / "gpu-exporter" / "dcgm-compat-patch.yaml", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S, tmp_path)],
        "patches": [{"path": "dcgm-compat-patch.yaml",
                     "target": {"kind": "DaemonSet", "name": "gpulens-gpu-exporter"}}],
    }))
    patched = _build(kubectl, tmp_path)
    container = _container(patched)
    assert container["args"] == ["gpu-exporter", "--compat=dcgm"]
    assert _load_from_container(container).compat == "dcgm"


def test_web_config_example_is_a_valid_secret_and_web_config(tmp_path: Path) -> None:
    example = (K8S / "gpu-exporter" / "web-config-example.yaml").read_text()
    (secret,) = [d for d in yaml.safe_load_all(example) if d]
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    (tmp_path / "web-config.yml").write_text(secret["stringData"]["web-config.yml"])
    # The TLS Secret is projected beside it; the loader checks the files exist (relative to web-config.yml).
    (tmp_path / "tls.crt").write_text("placeholder")
    (tmp_path / "tls.key").write_text("placeholder")
    web = load_web_config(tmp_path / "web-config.yml")
    assert web.tls is not None and web.tls.cert_file == str(tmp_path / "tls.crt")
    assert list(web.basic_auth_users) == ["prometheus"]
    daemonset_text = (K8S / "gpu-exporter" / "daemonset.yaml").read_text()
    assert secret["metadata"]["name"] in daemonset_text  # the mount instructions name this Secret
