"""A loopback HTTP proxy in front of moto that fails chosen requests, to test S3 faults for real."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.servers import free_socket

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
        if request.method != self.method or not re.search(self.target, described(request)):
            return False
        if self.times is not None and self.failed >= self.times:
            return False
        self.failed += 1
        return True


@dataclass
class FaultProxy:
    url: str
    rules: list[Rule] = field(default_factory=list[Rule])
    seen: list[str] = field(default_factory=list[str])

    def fail(self, method: str, target: str, times: int | None = None) -> Rule:
        rule = Rule(method, target, times)
        self.rules.append(rule)
        return rule

    def heal(self) -> None:
        self.rules.clear()


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    sock = free_socket()
    proxy = FaultProxy(f"http://127.0.0.1:{sock.getsockname()[1]}")
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.StreamResponse:
            proxy.seen.append(f"{request.method} {described(request)}")
            body = await request.read()
            if any(rule.takes(request) for rule in proxy.rules):
                return web.Response(status=500, body=S3_ERROR, content_type="application/xml")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            async with session.request(
                request.method, upstream + request.path_qs, headers=headers, data=body
            ) as answer:
                payload = await answer.read()
                reply = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
                return web.Response(status=answer.status, body=payload, headers=reply)

        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            yield proxy
        finally:
            await runner.cleanup()
