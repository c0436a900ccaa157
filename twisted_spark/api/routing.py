# -*- test-case-name: tests.test_api_routing -*-
"""URL matching that remembers its answers.

Werkzeug's ``MapAdapter.match`` costs 20-40 µs with this API's 33 rules, and
every request with a body matched twice (once for its body plan when its
head arrives, once by Klein): about a sixth of the server's CPU per function
call.  The answer depends only on the path, the method, the scheme and the
host, so :class:`MatchCache` keeps recent answers.  Only successful matches
are kept (a 404, 405 or redirect is computed every time), the cache is
bounded, and adding a rule empties it.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Map, MapAdapter

__all__ = ["CachedAdapter", "MatchCache", "use_match_cache"]

#: Distinct (host, path, method) answers kept; all are dropped when it is full.
DEFAULT_SIZE = 4096


class MatchCache(Map):
    """A werkzeug :class:`Map` whose adapters answer repeated matches from memory.

    :param size: how many answers to keep before starting afresh.
    """

    def __init__(self, *args: Any, size: int = DEFAULT_SIZE, **kwargs: Any) -> None:
        self.size = size
        self.answers: dict[tuple, tuple] = {}
        super().__init__(*args, **kwargs)

    def add(self, rulefactory: Any) -> None:
        self.answers = {}
        super().add(rulefactory)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        return CachedAdapter(self, super().bind(*args, **kwargs))


class CachedAdapter:
    """A :class:`MapAdapter` (every attribute is the wrapped one's) with a cached
    :meth:`match` for the common call: no arguments but ``return_rule``."""

    def __init__(self, cache: MatchCache, adapter: MapAdapter) -> None:
        self._cache = cache
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def match(self, path_info=None, method=None, return_rule=False, query_args=None,
              websocket=None):
        """``MapAdapter.match``, from the cache when only ``return_rule`` is given."""
        adapter = self._adapter
        if not (path_info is None and method is None and query_args is None
                and websocket is None):
            return adapter.match(path_info, method, return_rule, query_args, websocket)
        key = (adapter.server_name, adapter.script_name, adapter.path_info,
               adapter.default_method, adapter.url_scheme, adapter.websocket, return_rule)
        answers = self._cache.answers
        found = answers.get(key)
        if found is None:
            found = adapter.match(return_rule=return_rule)
            if len(answers) >= self._cache.size:
                answers.clear()
            answers[key] = found
        target, arguments = found
        return target, dict(arguments)


def use_match_cache(app, size: int = DEFAULT_SIZE) -> None:
    """Give a Klein ``app`` (before any route is added) a :class:`MatchCache`.

    Klein keeps its map in ``_url_map`` and offers no way to pass one in.
    """
    if list(app.url_map.iter_rules()):
        raise ValueError("give the app its match cache before adding routes")
    app._url_map = MatchCache(size=size)
