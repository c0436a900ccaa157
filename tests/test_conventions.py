"""House conventions of the source tree that a linter does not check."""

from __future__ import annotations

import re

from conftest import PROJECT_ROOT

SOURCES = sorted(
    path
    for folder in ("twisted_spark", "tests", "bench", "fuzz")
    for path in (PROJECT_ROOT / folder).rglob("*.py")
)

#: Epytext markup (Twisted's); this project writes Sphinx/reST roles.
EPYTEXT = re.compile(
    r"(?<![A-Za-z0-9_$])[LCIBU]\{[A-Za-z_.~`*]|^\s*@(param|type|return|rtype|ivar|raise)\b",
    re.MULTILINE,
)
#: ``import x as M``: a module renamed to one letter.
ONE_LETTER_ALIAS = re.compile(r"^\s*(from \S+ )?import [\w.]+ as [A-Za-z]$", re.MULTILINE)


def test_docstrings_use_sphinx_roles_not_epytext():
    found = [
        f"{path.relative_to(PROJECT_ROOT)}: {match.group(0)!r}"
        for path in SOURCES
        for match in EPYTEXT.finditer(path.read_text("utf-8"))
    ]
    assert found == []


def test_no_module_is_renamed_to_one_letter():
    found = [
        f"{path.relative_to(PROJECT_ROOT)}: {match.group(0).strip()}"
        for path in SOURCES
        for match in ONE_LETTER_ALIAS.finditer(path.read_text("utf-8"))
    ]
    assert found == []


PACKAGE = sorted((PROJECT_ROOT / "twisted_spark").rglob("*.py"))
HEADER = re.compile(r"# -\*- test-case-name: ([\w.,]+) -\*-")
#: No module of the package is longer than this (one job each).
MAX_LINES = 400


def test_every_module_names_its_tests_in_a_header():
    """Twisted's convention: the first line names the test module(s), which exist."""
    problems = []
    for path in PACKAGE:
        first = path.read_text("utf-8").split("\n", 1)[0]
        match = HEADER.fullmatch(first)
        name = path.relative_to(PROJECT_ROOT)
        if match is None:
            problems.append(f"{name}: no test-case-name header")
            continue
        for test in match.group(1).split(","):
            package, _, module = test.rpartition(".")
            if package != "tests" or not (PROJECT_ROOT / "tests" / f"{module}.py").exists():
                problems.append(f"{name}: no test module {test}")
    assert problems == []


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(PROJECT_ROOT)): count
        for path in PACKAGE
        if (count := len(path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
