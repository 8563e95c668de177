"""web-config.yml: one bad file per rule with its exact one-line message; TLS contexts; basic auth."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import bcrypt
import pytest

from gpulens.webconfig import WebConfig, WebConfigError, check_basic_auth, load_web_config, ssl_context

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
CLIENT_AUTH = ("NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, "
               "RequireAndVerifyClientCert")
TOP = "allowed: tls_server_config, basic_auth_users, http_server_config"


def _write(d: Path, text: str) -> Path:
    path = d / "web-config.yml"
    path.write_text(text)
    return path


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_full_config_resolves_paths_next_to_the_file(certdir: Path) -> None:
    cfg = load_web_config(_write(certdir, f"""
tls_server_config: {{cert_file: cert.pem, key_file: key.pem, client_ca_file: cert.pem, min_version: TLS13}}
basic_auth_users: {{alice: '{HASH}'}}
http_server_config: {{http2: true, headers: {{X-Frame-Options: deny}}}}
"""))
    assert cfg.tls is not None
    assert cfg.tls.cert_file == str(certdir / "cert.pem")
    assert cfg.tls.client_auth_type == "RequireAndVerifyClientCert"  # a CA alone means: verify clients
    assert dict(cfg.basic_auth_users) == {"alice": HASH}
    ctx = ssl_context(cfg.tls)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3


def test_defaults_and_empty_file(certdir: Path) -> None:
    assert load_web_config(_write(certdir, "")) == WebConfig()
    assert load_web_config(_write(certdir, "tls_server_config:\nbasic_auth_users:\n")) == WebConfig()
    cfg = load_web_config(_write(certdir, "tls_server_config: {cert_file: cert.pem, key_file: key.pem}\n"))
    assert cfg.tls is not None
    ctx = ssl_context(cfg.tls)
    assert (ctx.verify_mode, ctx.minimum_version) == (ssl.CERT_NONE, ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize("mode, verify", [("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
                                          ("RequestClientCert", ssl.CERT_OPTIONAL),
                                          ("RequireAnyClientCert", ssl.CERT_REQUIRED)])
def test_client_auth_modes(certdir: Path, mode: str, verify: ssl.VerifyMode) -> None:
    cfg = load_web_config(_write(certdir, "tls_server_config: {cert_file: cert.pem, key_file: key.pem, "
                                          f"client_ca_file: cert.pem, client_auth_type: {mode}}}\n"))
    assert cfg.tls is not None and ssl_context(cfg.tls).verify_mode == verify


TLS_OK = "tls_server_config: {cert_file: cert.pem, key_file: key.pem, "
BAD = [
    ("tls_config: {}", f"unknown key 'tls_config' ({TOP})"),
    ("tls_server_config: {certfile: cert.pem}", ("unknown key 'tls_server_config.certfile' "
     "(allowed: cert_file, key_file, client_ca_file, client_auth_type, min_version)")),
    ("http_server_config: {http3: true}", "unknown key 'http_server_config.http3' (allowed: http2, headers)"),
    ("- tls_server_config", f"must be a mapping, got a list ({TOP})"),
    ("tls_server_config: cert.pem", "'tls_server_config' must be a mapping, got a string"),
    ("tls_server_config: {cert_file: 1, key_file: key.pem}",
     "'tls_server_config.cert_file' must be a string, got an integer"),
    ("tls_server_config: {cert_file: cert.pem}", "missing key 'tls_server_config.key_file'"),
    ("tls_server_config: {cert_file: nope.pem, key_file: key.pem}",
     "'tls_server_config.cert_file' file not found: {dir}/nope.pem"),
    (TLS_OK + "client_ca_file: ca.pem}", "'tls_server_config.client_ca_file' file not found: {dir}/ca.pem"),
    (TLS_OK + "client_ca_file: cert.pem, client_auth_type: Required}",
     f"'tls_server_config.client_auth_type' is 'Required' (allowed: {CLIENT_AUTH})"),
    (TLS_OK + "min_version: TLS14}",
     "'tls_server_config.min_version' is 'TLS14' (allowed: TLS10, TLS11, TLS12, TLS13)"),
    (TLS_OK + "client_ca_file: cert.pem, client_auth_type: NoClientCert}",
     ("'tls_server_config.client_ca_file' is set but client_auth_type is NoClientCert (allowed: "
      "RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)")),
    (TLS_OK + "client_auth_type: VerifyClientCertIfGiven}",
     "'tls_server_config.client_auth_type' VerifyClientCertIfGiven needs 'tls_server_config.client_ca_file'"),
    ("basic_auth_users: [alice]", "'basic_auth_users' must be a mapping, got a list"),
    (f"basic_auth_users: {{1: '{HASH}'}}", "'basic_auth_users' user names must be strings, got an integer"),
    (f"basic_auth_users: {{'a:b': '{HASH}'}}", "'basic_auth_users.a:b' user names cannot contain ':'"),
    ("basic_auth_users: {alice: secret}",
     "'basic_auth_users.alice' must be a bcrypt hash ($2a$, $2b$ or $2y$)"),
    ("http_server_config: {http2: 'yes'}", "'http_server_config.http2' must be a boolean, got a string"),
    ("http_server_config: {headers: [a]}", "'http_server_config.headers' must be a mapping, got a list"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split("'")[1] if "'" in m else m[:20] for _, m in BAD])
def test_bad_config_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    path = _write(tmp_path, text + "\n")
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    assert str(err.value) == f"{path}: " + message.replace("{dir}", str(tmp_path))


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yml"
    with pytest.raises(WebConfigError, match=r"absent.yml: cannot read: No such file or directory$"):
        load_web_config(missing)
    with pytest.raises(WebConfigError) as err:
        load_web_config(_write(tmp_path, "tls_server_config: {cert_file: [\n"))
    assert str(err.value).startswith(f"{tmp_path}/web-config.yml: invalid YAML: ")
    assert "\n" not in str(err.value)


def test_unloadable_certificate(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    cfg = load_web_config(_write(tmp_path, "tls_server_config: {cert_file: cert.pem, key_file: key.pem}\n"))
    assert cfg.tls is not None
    with pytest.raises(WebConfigError, match="^tls_server_config: cannot load cert_file .*cert.pem") as err:
        ssl_context(cfg.tls)
    assert "\n" not in str(err.value)


def test_check_basic_auth() -> None:
    cfg = WebConfig(basic_auth_users={"alice": HASH})
    assert check_basic_auth(WebConfig(), None)  # no users: auth is off
    assert check_basic_auth(cfg, _basic("alice", "secret"))
    assert check_basic_auth(cfg, "basic " + _basic("alice", "secret").split()[1])  # any-case scheme
    for header in (None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"alice").decode(),
                   _basic("alice", "wrong"), _basic("bob", "secret"), _basic("alice", "x" * 100)):
        assert not check_basic_auth(cfg, header), header
