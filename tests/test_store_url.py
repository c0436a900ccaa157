"""``--database URL``: what is accepted, what is refused, and how it is logged."""

import pytest

from twisted_spark.store.url import POSTGRESQL, SQLITE, parse_database_url, redact_url


@pytest.mark.parametrize("text", [
    "postgresql://postgres@127.0.0.1:5432/spark",
    "postgres://spark:secret@db.example/spark?sslmode=require",
    "postgresql:///spark",
    "  postgresql://db/spark  ",
])
def test_postgresql_urls_are_taken_as_they_are(text):
    parsed = parse_database_url(text)
    assert parsed.kind == POSTGRESQL and parsed.url == text.strip()


def test_sqlite_is_the_file_in_the_data_dir():
    assert parse_database_url("sqlite:").kind == SQLITE


@pytest.mark.parametrize(("text", "says"), [
    ("mysql://root@localhost/spark", "unsupported database URL"),
    ("sqlite:/tmp/elsewhere.sqlite", "unsupported database URL"),
    ("postgresql:/spark", "unsupported database URL"),
    ("", "unsupported database URL"),
    ("postgresql://db:fivethousand/spark", "malformed database URL"),
    ("postgresql://db:5432", "names no database"),
    ("postgresql://db:5432/", "names no database"),
])
def test_anything_else_is_a_sentence_saying_what_to_write(text, says):
    with pytest.raises(ValueError) as info:
        parse_database_url(text)
    assert says in str(info.value)
    assert "postgresql://USER@HOST:PORT/DBNAME" in str(info.value)


def test_passwords_never_reach_logs_or_errors():
    url = "postgresql://spark:hunter2@db.example:5433/spark"
    assert parse_database_url(url).redacted == "postgresql://spark:***@db.example:5433/spark"
    assert redact_url("postgresql://db/spark") == "postgresql://db/spark"
    with pytest.raises(ValueError) as info:
        parse_database_url("postgresql://spark:hunter2@db:x/spark")
    assert "hunter2" not in str(info.value)
