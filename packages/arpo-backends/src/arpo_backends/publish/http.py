"""HTTP calls to inference servers with a timeout each and errors that name the server, the route and the fix.

Synchronous on purpose: a trainer calls ``publish`` between optimiser steps, in its own (non-async) code.
``post_each`` sends the same request to several servers at once (one daemon thread per server) and returns each
server's reply or error; ``post_all`` raises the first error. Every call carries a timeout; the message of a
failure is one sentence:

- unreachable: ``cannot reach the inference server at URL (POST /route failed: ...); check ...``
- timeout: ``POST URL/route did not answer within N s ...``
- an error status: ``POST URL/route answered 500: <start of the body>``; for a 404 the caller's hint follows,
  e.g. which environment variable enables the route.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import wait
from functools import partial
from typing import Any

from arpo_backends.publish.errors import PublishError
from arpo_backends.publish.threads import spawn

__all__ = ["HttpClient", "Reply", "normalise_url"]

_EXCERPT = 300


def normalise_url(url: str) -> str:
    """``http://host:8000/v1/`` → ``http://host:8000``: routes are appended to the server's root."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"inference server URL {url!r} must start with http:// or https://.")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


class Reply:
    """A successful answer: status, text and (when it is JSON) the decoded body."""

    def __init__(self, url: str, status: int, text: str) -> None:
        self.url = url
        self.status = status
        self.text = text

    def json(self) -> Any:
        """The decoded body, or ``None`` when it is not JSON (vLLM's LoRA routes answer plain text)."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


class HttpClient:
    """One connection pool for a publisher's lifetime; ``timeout_s`` is the default per call."""

    def __init__(self, timeout_s: float) -> None:
        import httpx2

        if timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s} must be positive.")
        self.timeout_s = timeout_s
        self._client = httpx2.Client(timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        route: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        hint_404: str = "",
    ) -> Reply:
        """One call; raises ``PublishError`` unless the server answers 2xx within the timeout."""
        import httpx2

        timeout = self.timeout_s if timeout_s is None else timeout_s
        target = f"{method} {url}{route}"
        try:
            response = self._client.request(
                method, url + route, json=body, params=dict(params) if params else None, timeout=timeout
            )
        except httpx2.TimeoutException:
            raise PublishError(
                f"{target} did not answer within {timeout:g} s; the server is overloaded or stuck, "
                "or the timeout is too short for this call."
            ) from None
        except httpx2.TransportError as err:
            raise PublishError(
                f"cannot reach the inference server at {url} ({method} {route} failed: {err or type(err).__name__}); "
                "check that it is running and that the URL is right."
            ) from None
        if response.status_code == 404 and hint_404:
            raise PublishError(f"{target} answered 404 (no such route): {hint_404}")
        if response.status_code >= 400:
            excerpt = " ".join(response.text.split())[:_EXCERPT] or response.reason_phrase
            raise PublishError(f"{target} answered {response.status_code}: {excerpt}")
        return Reply(url, response.status_code, response.text)

    def get(self, url: str, route: str, **kwargs: Any) -> Reply:
        return self.request("GET", url, route, **kwargs)

    def post(self, url: str, route: str, **kwargs: Any) -> Reply:
        return self.request("POST", url, route, **kwargs)

    def post_each(self, urls: Sequence[str], route: str, **kwargs: Any) -> list[Reply | PublishError]:
        """The same POST to every server concurrently; each server's reply or error, in the order of ``urls``."""
        if len(urls) == 1:
            try:
                return [self.post(urls[0], route, **kwargs)]
            except PublishError as single:
                return [single]
        futures = [spawn(partial(self.post, url, route, **kwargs), f"arpo-publish {route}") for url in urls]
        timeout = kwargs.get("timeout_s") or self.timeout_s
        wait(futures, timeout=timeout + 30.0)  # every call carries its own timeout; this only bounds a stuck thread
        results: list[Reply | PublishError] = []
        for url, future in zip(urls, futures, strict=True):
            if not future.done():
                results.append(PublishError(f"POST {url}{route} did not answer within {timeout:g} s."))
                continue
            err = future.exception()
            if err is None:
                results.append(future.result())
            elif isinstance(err, PublishError):
                results.append(err)
            else:
                results.append(PublishError(f"POST {url}{route} failed: {err!r}."))
        return results

    def post_all(self, urls: Sequence[str], route: str, **kwargs: Any) -> list[Reply]:
        """``post_each``, raising the first error (the message says how many other servers failed)."""
        results = self.post_each(urls, route, **kwargs)
        errors = [r for r in results if isinstance(r, PublishError)]
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise PublishError(f"{errors[0]} (and {len(errors) - 1} more server(s) failed the same call)")
        return [r for r in results if isinstance(r, Reply)]
