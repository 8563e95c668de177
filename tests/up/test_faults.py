"""`--fault` short names expand to the GPU exporter's fault syntax; unknown names fail with the allowed list."""

from __future__ import annotations

import pytest

from gpulens.up import faults


def test_short_names_expand_to_the_exporter_syntax() -> None:
    assert faults.expand("xid79") == ["xid:79@gpu3"]
    assert faults.expand("xid48, thermal,lost;ecc") == ["xid:48@gpu3", "throttle:thermal@gpu1", "lost:gpu2", "ecc-dbe@gpu0"]


def test_exporter_syntax_passes_through() -> None:
    assert faults.expand("lost:gpu2@120s..180s") == ["lost:gpu2@120s..180s"]


def test_exporter_syntax_is_checked_by_the_exporter_parser() -> None:
    with pytest.raises(ValueError, match="xid needs a numeric code"):
        faults.expand("xid:abc@gpu1")


def test_unknown_fault_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown fault 'melt' \(allowed: xid<N> \(e.g. xid79\), lost, thermal"):
        faults.expand("melt")
