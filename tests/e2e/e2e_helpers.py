"""Helpers shared by the whole-lab tests."""

from __future__ import annotations

import pytest

from lbd.lab.lab import _available_commands

_HAVE = _available_commands()


def _needs(*programs: str) -> pytest.MarkDecorator:
    missing = [p for p in programs if p not in _HAVE]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"this build of lbd has no `lbd {' / '.join(missing)}`: the lab cannot run it",
    )


needs_lbd_programs = _needs("controller", "speaker")
needs_controller = _needs("controller")
