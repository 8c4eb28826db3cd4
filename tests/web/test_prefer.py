"""RFC 7240's Prefer header as the shim reads it: names case-insensitive, among other preferences, parameters
and quoted strings read past, the first instance of a name winning, malformed elements ignored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shim.web.respond_async import preferences


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["respond-async"], {"respond-async": ""}, id="alone"),
        pytest.param(["Respond-Async"], {"respond-async": ""}, id="case-insensitive-name"),
        pytest.param(["return=minimal, respond-async"], {"return": "minimal", "respond-async": ""}, id="among-others"),
        pytest.param(["respond-async, wait=100"], {"respond-async": "", "wait": "100"}, id="with-wait"),
        pytest.param(["return=minimal", "respond-async"], {"return": "minimal", "respond-async": ""}, id="two-headers"),
        pytest.param(["respond-async; foo=bar; baz"], {"respond-async": ""}, id="parameters-read-past"),
        pytest.param(['foo="a, respond-async; b"'], {"foo": "a, respond-async; b"}, id="comma-inside-quotes"),
        pytest.param(['foo="say \\"hi\\""'], {"foo": 'say "hi"'}, id="escaped-quote"),
        pytest.param(["wait=1, wait=9"], {"wait": "1"}, id="first-instance-wins"),
        pytest.param([" , ,respond-async,, "], {"respond-async": ""}, id="empty-elements"),
        pytest.param(["respond async"], {}, id="space-in-name-malformed"),
        pytest.param(["wait=a b, respond-async"], {"respond-async": ""}, id="malformed-value-skipped-alone"),
        pytest.param(['foo="unterminated, respond-async'], {}, id="unterminated-quote-swallows-the-rest"),
        pytest.param(["respond-asynchronously"], {"respond-asynchronously": ""}, id="longer-name-is-another"),
        pytest.param([""], {}, id="empty"),
    ],
)
def test_preferences(values: list[str], expected: dict[str, str]) -> None:
    """Each Prefer value reads as RFC 7240 section 2 says."""
    assert preferences(values) == expected


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~", min_size=1, max_size=12)


@given(st.lists(st.tuples(TOKEN, st.one_of(st.none(), TOKEN, st.text(max_size=12))), max_size=6))
def test_any_list_of_preferences_reads_back(items: list[tuple[str, str | None]]) -> None:
    """A header written from preferences (values quoted, quotes and backslashes escaped) reads back as them."""

    def written(name: str, value: str | None) -> str:
        if value is None:
            return name
        return name + '="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = ", ".join(written(name, value) for name, value in items)
    expected: dict[str, str] = {}
    for name, value in items:
        expected.setdefault(name.lower(), value or "")
    assert preferences([header]) == expected
