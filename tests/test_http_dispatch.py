"""The route table's dispatch by path segments answers what aiohttp's own router did."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from transports.http.dispatch import RouteTable
from transports.http.routes import ROUTES

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")

#: What a path parameter may be on the wire, the awkward ones included.
VALUES = (
    "s1",
    "a.b:c@d-e_f",
    "",
    "%2F",
    "a%2Fb",
    "a%25b",
    "%7Bx%7D",
    "{x}",
    "x}",
    "..",
    ".",
    "%2E%2E",
    "%C3%A9t%C3%A9",
    "été",
    "a%20b",
    "a b",
    "a+b",
    "stream",
    "context",
)


async def _handler(request: web.Request) -> web.StreamResponse:
    raise AssertionError("never called")


def _routers() -> tuple[web.UrlDispatcher, web.UrlDispatcher]:
    """aiohttp's router with every route as ``router.add_route``, and one with the table."""
    plain = web.UrlDispatcher()
    table = RouteTable()
    for route in ROUTES:
        plain.add_route(route.method, route.path, _handler, name=route.name)
        table.add_route(route.method, route.path, _handler, name=route.name)
    ours = web.UrlDispatcher()
    ours.register_resource(table)
    plain.freeze()
    ours.freeze()
    return plain, ours


def _paths() -> list[str]:
    paths = {"/", "//", "/sessions/", "/sessions//context", "/nope", "/sessions/a/b/c/d/e"}
    for route in ROUTES:
        template = route.path
        paths.update({template, template + "/", template + "/x", template.rsplit("/", 1)[0]})
        names = [part for part in template.split("/") if part.startswith("{")]
        for values in itertools.product(VALUES, repeat=len(names)):
            if len(names) > 1 and len(set(values)) > 1 and "s1" not in values:
                continue  # every value in each position, not every combination
            path = template
            for name, value in zip(names, values, strict=True):
                path = path.replace(name, value, 1)
            paths.add(path)
            paths.add(path.replace("/sessions/", "/Sessions/"))
    return sorted(paths)


def _request(method: str, path: str) -> Any:
    """What a router reads of a request, the URL built as aiohttp's server builds it."""
    return SimpleNamespace(method=method, rel_url=URL.build(path=path, encoded=True))


async def _outcome(router: web.UrlDispatcher, method: str, path: str) -> tuple:
    match = await router.resolve(_request(method, path))
    exc = match.http_exception
    if exc is not None:
        allowed = sorted(getattr(exc, "allowed_methods", ()))
        return ("error", exc.status, allowed, match.route.name)
    route = match.route
    return ("route", route.name, route.method, route.resource.canonical, dict(match))


@pytest.mark.parametrize("method", METHODS)
async def test_table_resolves_every_path_as_aiohttp_router_does(method):
    """Same route, same match info (unquoted alike), same 404 or 405 with the same Allow."""
    plain, ours = _routers()
    paths = _paths()
    assert len(paths) > 300
    for path in paths:
        want = await _outcome(plain, method, path)
        got = await _outcome(ours, method, path)
        assert got == want, (method, path)


def test_table_lists_every_route_with_its_own_resource():
    """router.routes() still shows each route with its template (openapi relies on it)."""
    _, ours = _routers()
    listed = [(r.method, r.resource.canonical, r.name) for r in ours.routes()]
    assert listed == [(r.method, r.path, r.name) for r in ROUTES]


def test_table_refuses_templates_it_cannot_match_like_aiohttp():
    """A regex parameter or a literal needing quoting is refused rather than mis-matched."""
    table = RouteTable()
    with pytest.raises(ValueError):
        table.add_route("GET", "/files/{name:.*}", _handler)
    with pytest.raises(ValueError):
        table.add_route("GET", "/a b/{x}", _handler)
    with pytest.raises(ValueError):
        table.add_route("GET", "relative/{x}", _handler)
