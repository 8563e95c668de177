"""Prometheus exporter-toolkit `web-config.yml` (TLS and basic auth), read the way node_exporter reads it.

The same file works for `node_exporter --web.config.file` and every gpulens exporter, so operators keep one
format. Each problem is one line naming the key path and the allowed values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import bcrypt
import yaml

TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version")
HTTP_KEYS = ("http2", "headers")

# Python verifies any client certificate it receives against the CA, so Go's "request/require any" modes
# (no verification) become their verifying twins here; both still need client_ca_file.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = MappingProxyType({
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
})
MIN_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType({
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
})
_BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
# exporter-toolkit's bcrypt of "fakepassword": unknown users cost one bcrypt too, so timing can't list users.
_FAKE_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
_DUMMY_HASHES: dict[bytes, bytes] = {}  # cost prefix (b"$2b$12$") -> a hash of that cost, for unknown users
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; Go's bcrypt (exporter-toolkit) rejects longer passwords
_AUTH_CACHE_SIZE = 64
_auth_cache: dict[bytes, None] = {}  # sha256 of (user, hash, password) bcrypt accepted, oldest first
# One bcrypt at a time, as exporter-toolkit does: a password-guessing client can't take every core.
_bcrypt_lock = threading.Lock()


class WebConfigError(ValueError):
    """A bad web-config.yml; the message is one line naming the key path and what is allowed."""


@dataclass(frozen=True)
class TLSConfig:
    """`tls_server_config`: the server certificate and optional client-certificate checks."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"  # exporter-toolkit's default


@dataclass(frozen=True)
class WebConfig:
    """A loaded web-config.yml; an empty one serves plain HTTP without auth."""

    tls: TLSConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
             list: "a list", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _section(src: str, raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A mapping under `key` with only `allowed` keys; null or absent reads as empty."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{src}: '{key}' must be a mapping, got {_kind(value)}")
    for sub in value:
        if sub not in allowed:
            raise WebConfigError(f"{src}: unknown key '{key}.{sub}' (allowed: {', '.join(allowed)})")
    return value


def _string(src: str, raw: Mapping[str, Any], section: str, key: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise WebConfigError(f"{src}: '{section}.{key}' must be a string, got {_kind(value)}")
    return value


def _choice(src: str, raw: Mapping[str, Any], section: str, key: str, default: str,
            allowed: Mapping[str, Any]) -> str:
    value = _string(src, raw, section, key) or default
    if value not in allowed:
        raise WebConfigError(f"{src}: '{section}.{key}' is '{value}' (allowed: {', '.join(allowed)})")
    return value


def _file(src: str, raw: Mapping[str, Any], key: str, base: Path, required: bool) -> str:
    """A file path; relative paths are relative to web-config.yml, as in exporter-toolkit."""
    value = _string(src, raw, "tls_server_config", key)
    if not value:
        if required:
            raise WebConfigError(f"{src}: missing key 'tls_server_config.{key}'")
        return ""
    path = base / value
    if not path.is_file():
        raise WebConfigError(f"{src}: 'tls_server_config.{key}' file not found: {path}")
    return str(path)


def _tls(src: str, raw: Mapping[str, Any], base: Path) -> TLSConfig | None:
    tls = _section(src, raw, "tls_server_config", TLS_KEYS)
    if not tls:
        return None
    cert = _file(src, tls, "cert_file", base, required=True)
    key = _file(src, tls, "key_file", base, required=True)
    ca = _file(src, tls, "client_ca_file", base, required=False)
    # A CA without a mode means "verify clients": the only reason to configure one.
    auth = _choice(src, tls, "tls_server_config", "client_auth_type",
                   "RequireAndVerifyClientCert" if ca else "NoClientCert", CLIENT_AUTH_TYPES)
    if ca and auth == "NoClientCert":
        raise WebConfigError(f"{src}: 'tls_server_config.client_ca_file' is set but client_auth_type is "
                             f"NoClientCert (allowed: {', '.join(list(CLIENT_AUTH_TYPES)[1:])})")
    if not ca and auth != "NoClientCert":
        raise WebConfigError(f"{src}: 'tls_server_config.client_auth_type' {auth} needs "
                             "'tls_server_config.client_ca_file'")
    version = _choice(src, tls, "tls_server_config", "min_version", "TLS12", MIN_VERSIONS)
    return TLSConfig(cert, key, ca, auth, version)


def _users(src: str, raw: Mapping[str, Any]) -> Mapping[str, str]:
    users = raw.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise WebConfigError(f"{src}: 'basic_auth_users' must be a mapping, got {_kind(users)}")
    for user, hashed in users.items():
        if not isinstance(user, str):
            raise WebConfigError(f"{src}: 'basic_auth_users' user names must be strings, got {_kind(user)}")
        if ":" in user:  # RFC 7617: the first ':' ends the user id, so such a user could never log in
            raise WebConfigError(f"{src}: 'basic_auth_users.{user}' user names cannot contain ':'")
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            raise WebConfigError(f"{src}: 'basic_auth_users.{user}' must be a bcrypt hash "
                                 "($2a$, $2b$ or $2y$)")
    return MappingProxyType(dict(users))


def _http(src: str, raw: Mapping[str, Any]) -> None:
    """Validate `http_server_config`; http2 and headers are accepted and have no effect here."""
    http = _section(src, raw, "http_server_config", HTTP_KEYS)
    if not isinstance(http.get("http2", False), bool):
        raise WebConfigError(f"{src}: 'http_server_config.http2' must be a boolean, "
                             f"got {_kind(http['http2'])}")
    if not isinstance(http.get("headers") or {}, dict):
        raise WebConfigError(f"{src}: 'http_server_config.headers' must be a mapping, "
                             f"got {_kind(http['headers'])}")


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web-config.yml; raises WebConfigError on the first problem."""
    src = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise WebConfigError(f"{src}: cannot read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise WebConfigError(f"{src}: invalid YAML: {' '.join(str(err).split())}") from err
    if raw is None:
        return WebConfig()
    if not isinstance(raw, dict):
        raise WebConfigError(f"{src}: must be a mapping, got {_kind(raw)} (allowed: {', '.join(TOP_KEYS)})")
    for key in raw:
        if key not in TOP_KEYS:
            raise WebConfigError(f"{src}: unknown key '{key}' (allowed: {', '.join(TOP_KEYS)})")
    base = Path(path).parent
    _http(src, raw)
    return WebConfig(tls=_tls(src, raw, base), basic_auth_users=_users(src, raw))


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A server-side context for `tls`; a cert/key that doesn't load raises WebConfigError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSIONS[tls.min_version]
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
    except ssl.SSLError as err:
        raise WebConfigError(f"tls_server_config: cannot load cert_file {tls.cert_file}, key_file "
                             f"{tls.key_file} or client_ca_file {tls.client_ca_file or '-'}: {err}") from err
    ctx.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    return ctx


class WebConfigReloader:
    """A web-config.yml re-read when it or the files it names change, as exporter-toolkit does.

    cert-manager renews certificates and operators rotate passwords without restarting the pod. Files
    are stat'ed at most every `check_seconds`; a broken new version keeps the last good config and logs
    once (then once more when a good version loads).
    """

    def __init__(self, path: str | Path, log: logging.Logger | None = None, check_seconds: float = 1.0):
        self.path = str(path)
        self._log = log or logging.getLogger("gpulens.webconfig")
        self._check_seconds = check_seconds
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()
        self._bad: str | None = None
        self.reloads = 0
        config = load_web_config(self.path)  # raises WebConfigError: the operator fixes it first
        self._current = (config, ssl_context(config.tls) if config.tls is not None else None)
        self._stamp = self._stat(config)

    def _stat(self, config: WebConfig) -> tuple[tuple[str, float, int], ...]:
        files = [self.path]
        if config.tls is not None:
            files += [f for f in (config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file) if f]
        out = []
        for name in files:
            try:
                st = os.stat(name)
                out.append((name, st.st_mtime, st.st_size))
            except OSError:
                out.append((name, -1.0, -1))
        return tuple(out)

    def get(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        """The current (config, TLS context); re-read first if the files changed."""
        now = time.monotonic()
        if now - self._checked_at >= self._check_seconds:
            with self._lock:
                if now - self._checked_at >= self._check_seconds:
                    self._checked_at = now
                    self._maybe_reload()
        return self._current

    def _maybe_reload(self) -> None:
        stamp = self._stat(self._current[0])
        if stamp == self._stamp:
            return
        try:
            config = load_web_config(self.path)
            ctx = ssl_context(config.tls) if config.tls is not None else None
        except WebConfigError as err:
            if self._bad != str(err):
                self._bad = str(err)
                self._log.error(f"web config reload failed, keeping the last good one: {err}",
                                extra={"event": {"action": "web-config-reload", "outcome": "failure"}})
            self._stamp = stamp  # do not retry until the files change again
            return
        self._current, self._stamp, self._bad = (config, ctx), self._stat(config), None
        self.reloads += 1
        self._log.info(f"web config reloaded from {self.path}", extra={"event": {"action": "web-config-reload", "outcome": "success"}})


def _credentials(header_value: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an `Authorization: Basic …` header, or None if it isn't one."""
    scheme, _, token = (header_value or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (binascii.Error, UnicodeDecodeError):
        return None


def _dummy_hash(cfg: WebConfig) -> bytes:
    """A hash as costly as the dearest configured one: an unknown user takes as long as a known one."""
    costs = sorted({h[:7].encode() for h in cfg.basic_auth_users.values()}, key=lambda p: int(p[4:6]))
    prefix = costs[-1] if costs else _FAKE_HASH[:7]
    dummy = _DUMMY_HASHES.get(prefix)
    if dummy is None:
        dummy = _DUMMY_HASHES[prefix] = bcrypt.hashpw(b"gpulens-dummy-password", bcrypt.gensalt(int(prefix[4:6])))
    return dummy


def check_basic_auth(cfg: WebConfig, header_value: str | None) -> bool:
    """Whether the Authorization header passes `cfg`'s basic_auth_users (always, when there are none).

    Accepted credentials are cached by a sha256 of (user, hash, password): bcrypt costs ~100 ms and
    Prometheus scrapes every few seconds, as in exporter-toolkit.
    """
    if not cfg.basic_auth_users:
        return True
    creds = _credentials(header_value)
    if creds is None:
        return False
    user, password = creds
    if len(password) > MAX_PASSWORD_BYTES:  # bcrypt 4.x would compare only the first 72 bytes
        return False
    hashed = cfg.basic_auth_users.get(user)
    key = hashlib.sha256(f"{user.encode().hex()}:{hashed}:{password.hex()}".encode()).digest()
    if hashed is not None and key in _auth_cache:
        return True
    with _bcrypt_lock:
        try:
            ok = bcrypt.checkpw(password, hashed.encode() if hashed is not None else _dummy_hash(cfg))
        except ValueError:  # bcrypt >= 5 refuses passwords over 72 bytes: no stored hash can match one
            ok = False
        ok = ok and hashed is not None
        if ok:  # evict under the lock: iterating a dict another thread grows would raise
            if len(_auth_cache) >= _AUTH_CACHE_SIZE:
                del _auth_cache[next(iter(_auth_cache))]
            _auth_cache[key] = None
    return ok
