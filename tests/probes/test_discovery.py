"""Discovered InferenceServices become probe targets; vanished ones lose their series; API errors keep the last set."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gpulens.probes.inference.app import ProbeApp
from gpulens.probes.inference.config import ProbeConfig, parse_targets
from gpulens.probes.inference.discovery import Discovery, to_targets
from gpulens.probes.inference.otel import Tracing


@dataclass(frozen=True)
class Found:
    """The shape of gpulens.exporters.kserve.discovery.ProbeTarget (what its list_probe_targets returns)."""

    namespace: str
    inferenceservice: str
    model: str
    url: str
    protocol: str


def test_to_targets_names_and_defaults() -> None:
    cfg = ProbeConfig(interval_seconds=30, connection="cold")
    found = [Found("models", "llama", "llama", "http://llama.models.svc.cluster.local/", "v2"),
             Found("models", "old", "old", "http://old", "v1"), Found("x", "grpc-only", "g", "grpc://g", "v2")]
    targets = to_targets(found, cfg)
    assert [(t.name, t.url, t.protocol) for t in targets] == [
        ("models/llama", "http://llama.models.svc.cluster.local", "v2"), ("models/old", "http://old", "v1")]
    assert all(t.expect_from_metadata and t.payload is None and t.interval_seconds == 30 and t.connection == "cold"
               for t in targets)


def test_discovery_updates_the_app_and_survives_api_errors(model_server) -> None:  # type: ignore[no-untyped-def]
    cfg = ProbeConfig()
    static = parse_targets({"targets": [{"name": "static", "url": model_server.url, "model": "classifier",
                                         "protocol": "v2", "payload": "metadata"}]}, cfg)
    app = ProbeApp(cfg, static, Tracing(cfg))
    answers: list[object] = [[Found("models", "classifier", "classifier", model_server.url, "v2"),
                              Found("models", "broken", "broken", model_server.url, "v2")],
                             RuntimeError("API down"),
                             [Found("models", "classifier", "classifier", model_server.url, "v2")]]

    def lister() -> list[Found]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    discovery = Discovery(cfg, static, app.set_targets, lister, logging.getLogger("test"))
    try:
        assert discovery.loop.run_once()
        assert sorted(app.targets) == ["models/broken", "models/classifier", "static"]
        results = {name: app.probe_once(t) for name, t in app.targets.items()}
        assert results["models/classifier"].success and results["models/broken"].reason == "http_5xx"
        assert not discovery.loop.run_once()  # the API failed: the last targets stay
        assert sorted(app.targets) == ["models/broken", "models/classifier", "static"]
        assert discovery.loop.run_once()
        assert sorted(app.targets) == ["models/classifier", "static"]
        assert 'target="models/broken"' not in app.render(False).decode()
    finally:
        app.stop()


def test_inference_services_from_the_kubernetes_api_are_probed(model_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The KServe exporter's real lister against the Kubernetes API stand-in, its targets probed on KServe."""
    from gpulens.probes.inference.discovery import kserve_lister
    from gpulens.sim.inferenceservices import inference_service
    from gpulens.sim.kubeapi import KubeAPI

    with KubeAPI() as api:
        for name in ("classifier", "wrong-shape"):
            isvc = inference_service(name, "models", protocol="v2")
            isvc["status"]["address"]["url"] = model_server.url  # the predictor is the demo server on loopback
            api.add(isvc)
        api.add(inference_service("elsewhere", "other", protocol="v2"))
        cfg = ProbeConfig(discover=True, discover_namespaces="models", kubeconfig=api.kubeconfig(str(tmp_path / "kubeconfig")))
        app = ProbeApp(cfg, [], Tracing(cfg))
        try:
            discovery = Discovery(cfg, [], app.set_targets, kserve_lister(cfg), logging.getLogger("test"))
            assert discovery.loop.run_once(), discovery.loop.last_error
            assert sorted(app.targets) == ["models/classifier", "models/wrong-shape"]
            results = {name: app.probe_once(t) for name, t in app.targets.items()}
            assert results["models/classifier"].success, results["models/classifier"].message
            assert results["models/wrong-shape"].reason == "validation"  # checked against its v2 metadata
        finally:
            app.stop()
