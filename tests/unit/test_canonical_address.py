"""``canonical_address`` answers exactly as :mod:`ipaddress` does, fast path or not (the IPv4
fast path returns the text itself when it is already canonical)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lbd.core.model import canonical_address


def reference(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def ours(text: str) -> str | None:
    try:
        return canonical_address(text)
    except ValueError:
        return None


OCTET = st.one_of(
    st.integers(0, 300).map(str),
    st.from_regex(r"\A[0-9]{1,4}\Z"),  # leading zeros, too long
    st.sampled_from(["", " 1", "1 ", "+1", "-1", "\u0661", "0x1", "²"]),
)


@given(st.lists(OCTET, min_size=3, max_size=5).map(".".join))
def test_dotted_text_is_read_as_ipaddress_reads_it(text: str) -> None:
    assert ours(text) == reference(text)


@given(st.ip_addresses())
def test_every_address_and_its_exploded_form(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assert canonical_address(str(ip)) == str(ip)
    assert canonical_address(ip.exploded) == str(ip)


@pytest.mark.parametrize(
    "text",
    ["198.18.0.1", "0.0.0.0", "255.255.255.255", "2001:DB8:0::7", "01.2.3.4", "1.2.3.256", "1.2.3"],
)
def test_examples(text: str) -> None:
    assert ours(text) == reference(text)
