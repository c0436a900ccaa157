# -*- test-case-name: tests.test_cluster_units -*-
"""The ``--redis`` URL, parsed (importable without the Redis client)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class RedisAddress:
    """A parsed ``redis://[[user]:password@]host[:port][/db]`` URL."""

    host: str
    port: int = 6379
    db: int | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """Parse ``url``; raises ValueError naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"--redis wants redis://HOST[:PORT][/DB], not {url!r}")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database of a Redis URL is a number, not {path!r}")
        return cls(
            host=parts.hostname,
            port=parts.port or 6379,
            db=int(path) if path else None,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db or 0}"
