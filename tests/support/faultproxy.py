"""A loopback HTTP proxy in front of moto that fails chosen requests, to test S3 faults for real."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from harness.servers import free_socket

S3_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>injected by the test proxy</Message></Error>"
)
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "host"}


def described(request: web.Request) -> str:
    """Decoded path and raw query, as the rules and `seen` match them."""
    return f"{request.path}?{request.query_string}"


@dataclass
class Rule:
    """Fail requests whose method matches and whose decoded path and query match `target`."""

    method: str
    target: str
    times: int | None = None
    """How many matching requests fail; None for all of them."""
    failed: int = 0

    def takes(self, request: web.Request) -> bool:
        if not re.fullmatch(self.method, request.method):
            return False
        if not re.search(self.target, described(request)):
            return False
        if self.times is not None and self.failed >= self.times:
            return False
        self.failed += 1
        return True


@dataclass
class Hold:
    """Keep matching requests waiting, unanswered, until released, then fail them without
    passing them on: a request that never reached S3 when its client was killed."""

    method: str
    target: str
    body: str | None = None
    """A pattern the request body must hold too (the keys of a multi-object delete)."""
    header: str | None = None
    """A header the request must carry too (`If-Match`: a commit, not a first write)."""
    held: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, request: web.Request, payload: bytes) -> bool:
        return (
            request.method == self.method
            and bool(re.search(self.target, described(request)))
            and (self.body is None or re.search(self.body, payload.decode(errors="replace")))
            is not None
            and (self.header is None or self.header in request.headers)
        )


@dataclass
class FaultProxy:
    url: str
    rules: list[Rule] = field(default_factory=list[Rule])
    holds: list[Hold] = field(default_factory=list[Hold])
    seen: list[str] = field(default_factory=list[str])

    def fail(self, method: str, target: str, times: int | None = None) -> Rule:
        """Answer matching requests with an S3 500 error (`.*` as method: every method)."""
        rule = Rule(method, target, times)
        self.rules.append(rule)
        return rule

    def hold(
        self, method: str, target: str, body: str | None = None, header: str | None = None
    ) -> Hold:
        hold = Hold(method, target, body, header)
        self.holds.append(hold)
        return hold

    def heal(self) -> None:
        """Answer normally again: held requests fail, no rule fails any more."""
        self.rules.clear()
        for hold in self.holds:
            hold.released.set()
        self.holds.clear()


PassOn = Callable[[], Awaitable[web.Response]]


async def relay(
    session: aiohttp.ClientSession, upstream: str, request: web.Request, body: bytes
) -> web.Response:
    """Pass a request on to `upstream` unchanged and its answer back."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    async with session.request(
        request.method, upstream + request.path_qs, headers=headers, data=body
    ) as answer:
        payload = await answer.read()
        reply = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        return web.Response(status=answer.status, body=payload, headers=reply)


@contextlib.asynccontextmanager
async def loopback_proxy(
    upstream: str, handle: Callable[[web.Request, bytes, PassOn], Awaitable[web.Response]]
) -> AsyncIterator[str]:
    """A proxy on a free loopback port in front of `upstream`; `handle(request, body, pass_on)`
    answers each request, calling `pass_on()` to relay it. Yields the proxy's URL."""
    sock = free_socket()
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            return await handle(request, body, lambda: relay(session, upstream, request, body))

        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            await runner.cleanup()


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("")

    async def handle(request: web.Request, body: bytes, pass_on: PassOn) -> web.Response:
        proxy.seen.append(f"{request.method} {described(request)}")
        for hold in [h for h in proxy.holds if h.matches(request, body)]:
            hold.held += 1
            await hold.released.wait()
            return web.Response(status=500, body=S3_ERROR, content_type="application/xml")
        if any(rule.takes(request) for rule in proxy.rules):
            return web.Response(status=500, body=S3_ERROR, content_type="application/xml")
        return await pass_on()

    async with loopback_proxy(upstream, handle) as url:
        proxy.url = url
        yield proxy
