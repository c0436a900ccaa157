"""tests/strict.py: skip when a requirement is missing, fail instead under CI."""

import pytest
import strict


def test_missing_requirement_skips_with_the_reason(monkeypatch):
    monkeypatch.delenv(strict.VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no browser here"):
        strict.unavailable("no browser here")


@pytest.mark.parametrize("value", ["", "0", "yes"])
def test_only_the_value_1_is_strict(monkeypatch, value):
    monkeypatch.setenv(strict.VARIABLE, value)
    with pytest.raises(pytest.skip.Exception):
        strict.unavailable("no browser here")


def test_strict_mode_fails_instead(monkeypatch):
    monkeypatch.setenv(strict.VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match="no browser.*TWISTED_SPARK_STRICT_TESTS=1"):
        strict.unavailable("no browser here")


@pytest.mark.parametrize(("value", "outcome"), [("", pytest.skip.Exception),
                                                 ("1", pytest.fail.Exception)])
def test_an_unreachable_postgresql_skips_saying_where_or_fails_in_ci(monkeypatch, value, outcome):
    import pg

    monkeypatch.setenv(strict.VARIABLE, value)
    monkeypatch.setattr(pg, "ADMIN_URL", "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(outcome, match=r"PostgreSQL at postgresql://postgres@127\.0\.0\.1:1/"):
        with pg.fresh_database():
            pass  # never reached
