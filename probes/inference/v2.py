"""Open Inference Protocol (KServe v2) prober: POST /v2/models/<model>/infer, outputs checked.

`payload: metadata` builds the request from GET /v2/models/<model> (each input's shape, -1 → 1, and
datatype → a random tensor) and checks the outputs against the metadata's, so a model answering
the wrong shape fails with reason `validation` without any per-model configuration.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping
from typing import Any

from gpulens.probes.inference.config import OutputExpectation, Target
from gpulens.probes.inference.result import ProbeResult, check_output, check_status, decode_json, fail, failed, measure
from gpulens.probes.inference.transport import PhaseClock, ProbeFailure, Response, Session

PROTOCOL = "v2"
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def random_values(datatype: str, count: int, rand: random.Random) -> list[Any]:
    """`count` random values of a v2 datatype, JSON-encodable."""
    if datatype == "BOOL":
        return [rand.random() < 0.5 for _ in range(count)]
    if datatype.startswith(("INT", "UINT")):
        return [rand.randint(0, 9) for _ in range(count)]
    if datatype == "BYTES":
        return ["gpulens" for _ in range(count)]
    return [rand.random() for _ in range(count)]


def metadata(target: Target, session: Session, headers: Mapping[str, str], deadline: float) -> dict[str, Any]:
    """The model's v2 metadata, fetched once per session (outside the probe's phases)."""
    key = f"v2-metadata:{target.model}"
    if key not in session.cache:
        response = session.request(PhaseClock(), "GET", f"/v2/models/{target.model}", b"", {**headers, **JSON}, deadline)
        check_status(target, response)
        doc = decode_json(response)
        if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
            raise fail("decode", f"v2 metadata of {target.model} has no inputs list", response)
        session.cache[key] = doc
    return dict(session.cache[key])


def generated_inputs(meta: Mapping[str, Any], rand: random.Random) -> list[dict[str, Any]]:
    inputs = []
    for spec in meta["inputs"]:
        shape = [1 if d < 0 else d for d in spec["shape"]]
        inputs.append({"name": spec["name"], "shape": shape, "datatype": spec["datatype"],
                       "data": random_values(spec["datatype"], math.prod(shape), rand)})
    return inputs


def expectations_from(meta: Mapping[str, Any]) -> tuple[OutputExpectation, ...]:
    return tuple(OutputExpectation(o.get("name", ""), o.get("datatype", ""), tuple(o["shape"]) if "shape" in o else None)
                 for o in meta.get("outputs") or [])


def check_outputs(expected: tuple[OutputExpectation, ...], doc: Any, response: Response) -> None:
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise fail("validation", "v2 response has no outputs list", response)
    by_name = {o.get("name"): o for o in outputs}
    for i, expect in enumerate(expected):
        out = by_name.get(expect.name) if expect.name else (outputs[i] if i < len(outputs) else None)
        if out is None:
            raise fail("validation", f"output {expect.name or i} missing (got {sorted(map(str, by_name))})", response)
        data = out.get("data")
        if not isinstance(data, list):
            raise fail("validation", f"output {out.get('name')}: no JSON data (binary outputs are not checked)", response)
        check_output(expect, str(out.get("name", "")), str(out.get("datatype", "")), list(out.get("shape") or []),
                     data, response)


def probe(target: Target, session: Session, headers: Mapping[str, str]) -> ProbeResult:
    """One v2 inference: metadata (cached) → request → status → JSON → output checks."""
    deadline = time.monotonic() + target.timeout_seconds
    send = {**dict(target.headers), **headers, **JSON}
    try:
        meta = metadata(target, session, headers, deadline) if target.payload is None or target.expect_from_metadata else {}
    except ProbeFailure as failure:
        return failed(target, headers, failure)
    payload = target.payload if target.payload is not None else {"inputs": generated_inputs(meta, random.Random())}
    expected = target.expect_outputs or (expectations_from(meta) if target.expect_from_metadata else ())
    body = json.dumps(payload).encode()

    def exchange(clock: PhaseClock) -> Response:
        response = session.request(clock, "POST", f"/v2/models/{target.model}/infer", body, send, deadline)
        check_status(target, response)
        with clock.phase("decode"):
            check_outputs(expected, decode_json(response), response)
        return response

    return measure(target, headers, exchange)

