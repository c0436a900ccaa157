# -*- test-case-name: tests.test_fuzz_corpus -*-
"""Run one fuzz target under atheris (libFuzzer), from the repository root.

::

    pip install -e '.[fuzz]'
    python -m fuzz.run coap_codec -runs=1000000
    python -m fuzz.run tcp_session -max_total_time=600 -jobs=1

The target's corpus directory ``fuzz/corpus/<target>/`` is passed to
libFuzzer first (it reads the seeds and keeps new interesting inputs in a
scratch directory, ``fuzz/work/<target>/``, not in the committed corpus);
any other arguments go to libFuzzer as they are.  Defaults: ``-timeout=5``
(seconds per input), ``-rss_limit_mb=1024``, ``-max_len=4096`` and
``-artifact_prefix=fuzz/crashes/<target>-``.  Only ``twisted_spark`` (and
the ``multipart`` parser the body target drives) is instrumented for
coverage.  ``python -m fuzz.run --list`` names the targets.
"""

from __future__ import annotations

import importlib
import sys

from fuzz.harness import CORPUS, ROOT
from fuzz.targets import TARGETS

DEFAULTS = ("-timeout=5", "-rss_limit_mb=1024", "-max_len=4096")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv[0] == "--list":
        print("\n".join(TARGETS))
        return 0
    name, options = argv[0], argv[1:]
    if name not in TARGETS:
        print(f"unknown target {name!r}; one of: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["twisted_spark", "multipart"]):
        target = importlib.import_module(f"fuzz.targets.{name}")
    work = ROOT / "fuzz" / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    crashes = ROOT / "fuzz" / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    given = {option.split("=", 1)[0] for option in options}
    defaults = [d for d in DEFAULTS if d.split("=", 1)[0] not in given]
    if "-artifact_prefix" not in given:
        defaults.append(f"-artifact_prefix={crashes}/{name}-")
    corpus = [] if any(not o.startswith("-") for o in options) else [str(work), str(CORPUS / name)]
    args = [sys.argv[0], *defaults, *options, *corpus]
    atheris.Setup(args, target.one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
