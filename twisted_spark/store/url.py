# -*- test-case-name: tests.test_store_url -*-
"""``--database URL``: which engine holds the server's state, and where.

``sqlite:`` (the default) is the file ``spark.sqlite`` in the data
directory, as it always was.  ``postgresql://user[:password]@host[:port]/db``
(or ``postgres://``, libpq's other spelling) is a PostgreSQL database, shared
by every node of a cluster; the URL goes to libpq as it is, so its query
parameters (``?sslmode=require``, ``?application_name=...``) work too.  This
module only reads the text: nothing connects here, and it imports no driver
(``twistd --help`` stays quick).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

#: What the usage error lists as accepted.
ACCEPTED = "'sqlite:' (the default: a file in the data dir) or postgresql://USER@HOST:PORT/DBNAME"


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed ``--database`` value.

    :ivar kind: :data:`SQLITE` or :data:`POSTGRESQL`.
    :ivar url: the text as given (for PostgreSQL, the libpq connection URI).
    """

    kind: str
    url: str

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by ``***``, for logs and errors."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """``url`` without its password (fit for a log line)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def parse_database_url(text: str) -> DatabaseURL:
    """Read a ``--database`` value; ValueError (a sentence naming what is accepted) if bad."""
    value = text.strip()
    if value == "sqlite:":
        return DatabaseURL(SQLITE, value)
    scheme = value.partition(":")[0].lower()
    if scheme not in ("postgresql", "postgres") or not value[len(scheme):].startswith("://"):
        raise ValueError(f"unsupported database URL {redact_url(value)!r}; use {ACCEPTED}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as error:
        raise ValueError(
            f"malformed database URL {redact_url(value)!r} ({error}); use {ACCEPTED}"
        ) from error
    if not parts.path.strip("/"):
        raise ValueError(
            f"database URL {redact_url(value)!r} names no database; "
            "add it after the host: postgresql://USER@HOST:PORT/DBNAME"
        )
    return DatabaseURL(POSTGRESQL, value)
