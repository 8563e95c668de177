"""Config precedence and one exact message per validation rule."""

from __future__ import annotations

import pytest

from gpulens.config import ConfigError, load
from gpulens.exporters.gpu.config import GpuExporterConfig


def _problems(**kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(GpuExporterConfig, **kwargs)
    return info.value.problems


def test_defaults() -> None:
    cfg = load(GpuExporterConfig, env={})
    assert cfg.port == 9445
    assert cfg.interval_seconds == 1.0
    assert cfg.compat == "none"


def test_precedence_file_then_env_then_flags(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("port: 1000\ninterval_seconds: 2\ncompat: dcgm\nprocesses: true\n")
    cfg = load(GpuExporterConfig, str(path), env={"GPULENS_PORT": "2000", "GPULENS_INTERVAL_SECONDS": "3"},
               flags={"port": "3000"})
    assert (cfg.port, cfg.interval_seconds, cfg.compat, cfg.processes) == (3000, 3.0, "dcgm", True)


def test_unknown_file_key_names_allowed_keys(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("prot: 1\n")
    [line] = _problems(file=str(path), env={})
    assert line.startswith(f"config file {path}: unknown key 'prot' (allowed: listen_address, port, ")


def test_wrong_type_in_file(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("port: nine\n")
    assert _problems(file=str(path), env={}) == [f"config file {path}: key 'port': 'nine' is not an integer"]


def test_yaml_bool_is_not_an_int(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("port: true\n")
    assert _problems(file=str(path), env={}) == [f"config file {path}: key 'port': True is not an integer"]


def test_wrong_choice_from_env() -> None:
    assert _problems(env={"GPULENS_COMPAT": "dcmg"}) == [
        "environment variable GPULENS_COMPAT: 'dcmg' is not allowed (allowed: none, dcgm)"]


def test_below_minimum_flag() -> None:
    assert _problems(env={}, flags={"interval_seconds": "0.001"}) == [
        "flag --interval-seconds: 0.001 is below the minimum 0.05"]


def test_bad_bool_flag() -> None:
    assert _problems(env={}, flags={"gpm": "maybe"}) == ["flag --gpm: 'maybe' is not a boolean (true|false)"]


def test_every_problem_reported_at_once() -> None:
    problems = _problems(env={"GPULENS_PORT": "x"}, flags={"log_level": "loud", "compat": "x"})
    assert len(problems) == 3


def test_file_not_a_mapping(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- port\n")
    [line] = _problems(file=str(path), env={})
    assert line.startswith(f"config file {path}: expected a mapping of keys (allowed: listen_address,")


def test_missing_file(tmp_path) -> None:
    assert _problems(file=str(tmp_path / "nope.yaml"), env={}) == [
        f"config file {tmp_path / 'nope.yaml'}: No such file or directory"]


def test_non_finite_interval() -> None:
    assert _problems(env={}, flags={"interval_seconds": "nan"}) == ["flag --interval-seconds: 'nan' is not a finite number"]


def test_port_above_maximum() -> None:
    assert _problems(env={}, flags={"port": "70000"}) == ["flag --port: 70000 is above the maximum 65535"]
