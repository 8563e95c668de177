"""The demo model server: real KServe answering v1/v2 with the torch classifier, and its broken variants."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from gpulens.sim.modelserver import CLASSES, ModelServerProcess, parse_models, sample_input


def _post(url: str, body: Any) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def _v2(batch: int = 1) -> dict[str, Any]:
    flat = [v for image in sample_input(batch) for channel in image for row in channel for v in row]
    return {"inputs": [{"name": "input-0", "shape": [batch, 1, 8, 8], "datatype": "FP32", "data": flat}]}


def test_v1_and_v2_give_the_same_probabilities(model_server: ModelServerProcess) -> None:
    status, headers, v1 = _post(f"{model_server.url}/v1/models/classifier:predict", {"instances": sample_input(2)})
    assert status == 200 and len(v1["predictions"]) == 2
    assert headers["server-timing"].startswith("predict;dur=")
    status, _, v2 = _post(f"{model_server.url}/v2/models/classifier/infer", _v2())
    assert status == 200 and v2["outputs"][0]["shape"] == [1, CLASSES]
    assert v2["outputs"][0]["data"] == pytest.approx(v1["predictions"][0], rel=1e-5)
    assert sum(v2["outputs"][0]["data"]) == pytest.approx(1.0, rel=1e-5)


def test_broken_models_fail_the_way_real_servers_do(model_server: ModelServerProcess) -> None:
    assert _post(f"{model_server.url}/v2/models/broken/infer", _v2())[0] == 500
    assert _post(f"{model_server.url}/v2/models/wrong-shape/infer", _v2())[2]["outputs"][0]["shape"] == [1, CLASSES - 1]
    assert _post(f"{model_server.url}/v1/models/classifier:predict", {"instances": "garbage"})[0] == 400
    assert _post(f"{model_server.url}/v2/models/nope/infer", _v2())[0] == 404


def test_parse_models_names_the_allowed_kinds() -> None:
    assert [(m.name, m.kind) for m in parse_models("a=slow,classifier")] == [("a", "slow"), ("classifier", "classifier")]
    with pytest.raises(ValueError, match="allowed: classifier, slow, broken, wrong-shape"):
        parse_models("resnet")


def test_start_fails_clearly_when_the_server_cannot_start(tmp_path: Any) -> None:
    with pytest.raises(RuntimeError, match="exited with 2"):
        ModelServerProcess(models="resnet", log_path=str(tmp_path / "log")).start(timeout=30)
