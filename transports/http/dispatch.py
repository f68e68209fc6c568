"""Route dispatch by path segments: a dictionary lookup instead of a regex per route.

aiohttp's router indexes a dynamic resource by the literal prefix before its first
parameter, so every route under ``/sessions/{session_id}`` shares the key ``/sessions``
and a request to one of them tries them in order, one regular expression each (about
twenty for ``PUT /sessions/{id}/context/{key}``). :class:`RouteTable` is one resource
holding every route of the table: it splits the path into segments, finds the templates
with that many segments and those literal segments in a dictionary, then checks the
parameters as aiohttp's own pattern does (``[^{}/]+``, unquoted the same way).

The routes stay aiohttp routes, each on its own resource (so ``route.name``, the
resource's ``canonical`` template and ``app.router.routes()`` are what they were), and
the order of precedence is aiohttp's: the longest literal prefix first, then the order
of registration. A path no template matches is 404; a path some template matches with
another method is 405 with those methods as ``Allow``, as the router makes them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from yarl import URL

__all__ = ["RouteTable"]

_PARAM = re.compile(r"{([_a-zA-Z][_a-zA-Z0-9]*)}")
#: Literal segments that aiohttp would match as written (no quoting to undo).
_LITERAL = re.compile(r"[A-Za-z0-9._~-]*")


def _unquote(value: str) -> str:
    """What aiohttp does to a matched parameter of ``path_safe``: undo ``%2F`` and ``%25``."""
    if "%" not in value:
        return value
    return value.replace("%2F", "/").replace("%25", "%")


class _Entry:
    """One route: its template's parameters (segment index, name) and its precedence."""

    __slots__ = ("method", "params", "rank", "route")

    def __init__(
        self, route: web.ResourceRoute, params: tuple[tuple[int, str], ...], rank: tuple
    ) -> None:
        self.route = route
        self.method = route.method
        self.params = params
        self.rank = rank

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The match info of a path whose literal segments already matched, or ``None``."""
        match: dict[str, str] = {}
        for index, name in self.params:
            value = segments[index]
            if not value or "{" in value or "}" in value:
                return None
            match[name] = _unquote(value)
        return match


class RouteTable(web.AbstractResource):
    """Every route of the API behind one resource, dispatched by path segments.

    Add routes with :meth:`add_route`, then register the table with
    ``app.router.register_resource(table)``.
    """

    def __init__(self) -> None:
        super().__init__(name=None)
        self._routes: list[web.ResourceRoute] = []
        # segment count -> literal positions -> (their getter, literal values -> entries)
        self._index: dict[
            int, dict[tuple[int, ...], tuple[Callable[[list[str]], Any], dict[Any, list[_Entry]]]]
        ] = {}

    def add_route(
        self, method: str, path: str, handler: Any, *, name: str | None = None
    ) -> web.ResourceRoute:
        """Add a route on a resource of its own (as ``router.add_route`` would)."""
        segments = path.split("/")
        if not path.startswith("/"):
            raise ValueError(f"a route path starts with '/': {path!r}")
        params: list[tuple[int, str]] = []
        literals: list[int] = []
        for index, segment in enumerate(segments):
            match = _PARAM.fullmatch(segment)
            if match:
                params.append((index, match.group(1)))
            elif _LITERAL.fullmatch(segment):
                literals.append(index)
            else:
                raise ValueError(f"unsupported path segment {segment!r} in {path!r}")
        resource: web.Resource
        if params:
            resource = web.DynamicResource(path, name=name)
            prefix = path.partition("{")[0].rpartition("/")[0]
        else:
            resource = web.PlainResource(path, name=name)
            prefix = path
        route = resource.add_route(method, handler)
        # aiohttp's precedence: the longest literal prefix, then the order of registration.
        entry = _Entry(route, tuple(params), (-len(prefix.rstrip("/") or "/"), len(self._routes)))
        self._routes.append(route)
        tables = self._index.setdefault(len(segments), {})
        getter, table = tables.setdefault(tuple(literals), (operator.itemgetter(*literals), {}))
        table.setdefault(getter(segments), []).append(entry)
        return route

    def _candidates(self, segments: list[str]) -> list[_Entry]:
        found: list[_Entry] = []
        tables = self._index.get(len(segments))
        if tables is None:
            return found
        for getter, table in tables.values():
            entries = table.get(getter(segments))
            if entries is not None:
                if found:
                    found = sorted(found + entries, key=operator.attrgetter("rank"))
                else:
                    found = entries
        return found

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None, set]:
        segments = request.rel_url.path_safe.split("/")
        method = request.method
        allowed: set[str] = set()
        for entry in self._candidates(segments):
            match = entry.match(segments)
            if match is None:
                continue
            if entry.method == method or entry.method == "*":
                return web.UrlMappingMatchInfo(match, entry.route), {entry.method}
            allowed.add(entry.method)
        return None, allowed

    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, **kwargs: str) -> URL:
        raise NotImplementedError("build a URL from a route's own resource")

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("the route table cannot be mounted under a prefix")

    def get_info(self) -> dict[str, Any]:
        return {"routes": len(self._routes)}

    def raw_match(self, path: str) -> bool:
        return False

    def freeze(self) -> None:
        for route in self._routes:
            route.resource.freeze()  # type: ignore[union-attr]

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterator[web.ResourceRoute]:  # type: ignore[override]
        return iter(self._routes)
