"""Every committed fuzz corpus file goes through its target again, without atheris.

``fuzz/corpus/<target>/`` holds the seeds and the (minimised) crashes the
fuzzer found; replaying them here keeps every fixed crash fixed.  Each input
must also finish quickly: the targets promise bounded time per input.
"""

from __future__ import annotations

import importlib
import sys
import time

import pytest
from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))

from fuzz.targets import TARGETS  # noqa: E402

CORPUS = PROJECT_ROOT / "fuzz" / "corpus"
#: Seconds one input may take here (the fuzzer's own limit is -timeout=5).
SLOW = 2.0


def test_every_target_has_a_corpus_and_every_corpus_a_target():
    folders = {path.name for path in CORPUS.iterdir() if path.is_dir()}
    assert folders == set(TARGETS)
    assert all(any((CORPUS / name).iterdir()) for name in TARGETS)


@pytest.mark.parametrize("name", TARGETS)
def test_the_corpus_replays_cleanly(name):
    target = importlib.import_module(f"fuzz.targets.{name}")
    slow = []
    for path in sorted((CORPUS / name).iterdir()):
        started = time.perf_counter()
        try:
            target.one_input(path.read_bytes())
        except Exception as error:
            raise AssertionError(f"{path.relative_to(PROJECT_ROOT)}: {error!r}") from error
        if time.perf_counter() - started > SLOW:
            slow.append(path.name)
    assert slow == []


def test_atheris_is_not_needed_to_replay():
    for name in TARGETS:
        source = (PROJECT_ROOT / "fuzz" / "targets" / f"{name}.py").read_text()
        assert "atheris" not in source, name
