"""The test tree itself: pytest imports test modules by their basename (no
packages here), so two test files of one name in tests/unit and
tests/kernel stop the whole session at collection."""
from __future__ import annotations

import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent.parent


def test_no_two_test_modules_share_a_name():
    names = collections.Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
