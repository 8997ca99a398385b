"""Shared test fixtures.

Tests that need root (network namespaces, raw sockets) carry ``@pytest.mark.needs_root`` and are
skipped, with the reason shown in the summary, when the suite does not run as root.
"""

from __future__ import annotations

import os
import uuid

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: network namespaces and raw sockets (run as root)")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def netns_prefix() -> str:
    """A unique, short prefix for namespaces and links a test creates (names <= 15 chars)."""
    return "lt" + uuid.uuid4().hex[:6]
