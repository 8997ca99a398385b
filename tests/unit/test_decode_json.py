"""The API client's JSON decoding (msgspec, with the standard library for what msgspec refuses)."""

from __future__ import annotations

import json

import pytest

from lbd.k8s.client import decode_json


def test_a_number_beyond_64_bits_is_read_not_refused() -> None:
    # an IPv6 pool's address count in a custom resource's status can exceed 2**64
    raw = b'{"status": {"availableIPv6": 18446744073709551617, "assignedIPv6": 3}}'
    got = decode_json(raw)
    assert got == {"status": {"availableIPv6": 2**64 + 1, "assignedIPv6": 3}}
    # exact, not a float that compares equal (orjson gave 1.8446744073709552e+19 here)
    assert type(got["status"]["availableIPv6"]) is int


def test_a_number_beyond_a_float_is_the_standard_librarys_infinity() -> None:
    assert decode_json(b"[1e400]") == [float("inf")]


def test_the_same_objects_as_the_standard_library() -> None:
    raw = '{"a": [1, 2.5, "é", null, true, {"b": {}}], "c": "\\u00e9"}'.encode()
    assert decode_json(raw) == json.loads(raw)


def test_malformed_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_json(b'{"items": [')
