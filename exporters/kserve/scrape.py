"""HTTP to model servers: fetch /metrics with a size cap and a deadline, and ask v1/v2 whether a model is ready.

Every failure is a `ScrapeError` with a short reason (the `reason` label of
gpulens_kserve_scrape_errors_total): timeout, connect, http, too_large, parse, empty.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import urllib3

REASONS = ("timeout", "connect", "http", "too_large", "parse", "empty")
_CHUNK = 64 * 1024


class ScrapeError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Http:
    """A pooled HTTP client for model servers (keep-alive, no retries: the next refresh is the retry)."""

    def __init__(self, timeout: float, max_bytes: int, pool_size: int = 16):
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._pool = urllib3.PoolManager(num_pools=2048, maxsize=pool_size, retries=False, block=False)  # one pool per pod IP

    def fetch(self, url: str) -> bytes:
        """GET `url`; the body, at most max_bytes, read within `timeout` in total."""
        deadline = time.monotonic() + self.timeout
        try:
            resp = self._pool.request("GET", url, preload_content=False, redirect=False,
                                      headers={"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"},
                                      timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
        except urllib3.exceptions.NewConnectionError as err:  # a ConnectTimeoutError subclass, but refused/unreachable
            raise ScrapeError("connect", f"{url}: {str(err)[:200]}") from err
        except urllib3.exceptions.TimeoutError as err:
            raise ScrapeError("timeout", f"{url}: no answer within {self.timeout:g}s") from err
        except urllib3.exceptions.HTTPError as err:
            raise ScrapeError("connect", f"{url}: {type(err).__name__}: {str(err)[:200]}") from err
        complete = False
        try:
            if resp.status != 200:
                raise ScrapeError("http", f"{url}: HTTP {resp.status}")
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                raise ScrapeError("too_large", f"{url}: Content-Length {length} > {self.max_bytes} bytes")
            chunks, size = [], 0
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except urllib3.exceptions.TimeoutError as err:
                    raise ScrapeError("timeout", f"{url}: body not read within {self.timeout:g}s") from err
                except urllib3.exceptions.HTTPError as err:
                    raise ScrapeError("connect", f"{url}: {type(err).__name__} while reading") from err
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise ScrapeError("too_large", f"{url}: body over {self.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ScrapeError("timeout", f"{url}: body not read within {self.timeout:g}s")
                chunks.append(chunk)
            complete = True
            return b"".join(chunks)
        finally:
            if complete:
                resp.release_conn()  # keep-alive for the next refresh
            else:
                resp.close()  # unread body (too large, slow, error): the connection cannot be reused

    def model_ready(self, base_url: str, protocol: str, model: str) -> bool:
        """v2: GET /v2/models/{m}/ready → 200; v1: GET /v1/models/{m} → 200 with "ready": true (KServe)."""
        m = quote(model, safe="")
        url = f"{base_url}/v2/models/{m}/ready" if protocol == "v2" else f"{base_url}/v1/models/{m}"
        try:
            resp = self._pool.request("GET", url, redirect=False, timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
        except urllib3.exceptions.HTTPError:
            return False
        if resp.status != 200:
            return False
        if protocol == "v2":
            return True
        try:
            body = json.loads(resp.data or b"{}")
        except ValueError:
            return False
        return bool(body.get("ready", True)) if isinstance(body, dict) else False
