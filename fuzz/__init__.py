# -*- test-case-name: tests.test_fuzz_corpus -*-
"""Coverage-guided fuzzing of every parser that faces the network (issue 16).

``fuzz/targets/`` holds one module per target, each with a ``one_input(data)``
function that feeds bytes to the real code and asserts its contract; they
import without ``atheris``, so ``tests/test_fuzz_corpus.py`` replays every
file of ``fuzz/corpus/<target>/`` in the normal suite.  ``python -m fuzz.run``
runs a target under atheris (``pip install '.[fuzz]'``); ``fuzz/e2e.py``
mutates live sessions against a real server process.  See ``fuzz/README.rst``.
"""
