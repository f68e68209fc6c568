"""Shared pytest setup for the whole test tree."""

import pytest

# The importable contract suites assert in library modules: let pytest rewrite them.
pytest.register_assert_rewrite("eventlog.testing")
