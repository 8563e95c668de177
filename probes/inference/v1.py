"""KServe v1 (TensorFlow Serving style) prober: POST /v1/models/<model>:predict, `predictions` checked.

The first `expect.outputs` entry describes `predictions` (shape of the nested list, value range);
`payload: metadata` generates `instances` from the model's v2 metadata (KServe serves both).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

from gpulens.probes.inference import v2
from gpulens.probes.inference.config import Target
from gpulens.probes.inference.result import (
    ProbeResult,
    check_output,
    check_status,
    decode_json,
    fail,
    failed,
    flatten,
    measure,
    shape_of,
)
from gpulens.probes.inference.transport import PhaseClock, ProbeFailure, Response, Session

PROTOCOL = "v1"


def _nest(values: list[Any], shape: list[int]) -> Any:
    if len(shape) <= 1:
        return values
    step = len(values) // shape[0]
    return [_nest(values[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def probe(target: Target, session: Session, headers: Mapping[str, str]) -> ProbeResult:
    """One v1 prediction: request → status → JSON → `predictions` checks."""
    deadline = time.monotonic() + target.timeout_seconds
    send = {**dict(target.headers), **headers, **v2.JSON}
    meta: dict[str, Any] = {}
    if target.payload is None or target.expect_from_metadata:
        try:
            meta = v2.metadata(target, session, headers, deadline)
        except ProbeFailure as failure:
            return failed(target, headers, failure)
    if target.payload is not None:
        payload = target.payload
    else:
        first = v2.generated_inputs(meta, random.Random())[0]
        payload = {"instances": _nest(first["data"], first["shape"])}
    expected = target.expect_outputs or (v2.expectations_from(meta) if target.expect_from_metadata else ())
    body = json.dumps(payload).encode()

    def exchange(clock: PhaseClock) -> Response:
        response = session.request(clock, "POST", f"/v1/models/{target.model}:predict", body, send, deadline)
        check_status(target, response)
        with clock.phase("decode"):
            doc = decode_json(response)
            predictions = doc.get("predictions") if isinstance(doc, dict) else None
            if not isinstance(predictions, list):
                raise fail("validation", "v1 response has no predictions list", response)
            if expected:
                check_output(expected[0], "predictions", "", shape_of(predictions), flatten(predictions), response)
        return response

    return measure(target, headers, exchange)
