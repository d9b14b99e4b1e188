"""A tiny HTTP client for the server tests (the standard library only: no httpx needed)."""

from __future__ import annotations

import http.client
import json


def call(port: int, method: str, path: str, body: bytes | str | dict | list | None = None,
         headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict, object]:
    """(status, headers, parsed JSON or text) of one request on a fresh connection."""
    if isinstance(body, dict | list):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json",
                                                       **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        data: object = json.loads(raw)
    except ValueError:
        data = raw.decode("utf-8", "replace")
    return resp.status, hdrs, data
