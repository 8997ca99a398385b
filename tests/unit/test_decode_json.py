"""The API client's JSON decoding (orjson, with the standard library for what orjson refuses)."""

from __future__ import annotations

import json

import pytest

from lbd.k8s.client import decode_json


def test_a_number_beyond_64_bits_is_read_not_refused() -> None:
    # an IPv6 pool's address count in a custom resource's status can exceed 2**64
    raw = b'{"status": {"availableIPv6": 18446744073709551616, "assignedIPv6": 3}}'
    assert decode_json(raw) == {"status": {"availableIPv6": 2**64, "assignedIPv6": 3}}


def test_the_same_objects_as_the_standard_library() -> None:
    raw = '{"a": [1, 2.5, "é", null, true, {"b": {}}], "c": "\\u00e9"}'.encode()
    assert decode_json(raw) == json.loads(raw)


def test_malformed_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_json(b'{"items": [')
