"""Properties of the framing rules added for shared lines and interoperability:

- NE-1000: a host that does not know the framing of the next reply (``any_reply_end``,
  ``decode_any_reply``) finds every reply whole and in the framing it was sent in, however
  the bytes are cut, and is never told more bytes are still to come than the reply has
  (``reply_bytes_to_come``); reply numbers always carry their decimal point and read back
  as sent.
- Harvard: a reply is never taken as whole before its last byte (``reply_may_grow``) when
  the host expects as many lines as the pump sends, whatever the address, prompt and text.
"""

from __future__ import annotations

import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.harvard.codec import (
    ERROR_HEADS,
    HarvardReply,
    Prompt,
    reply_end,
    reply_may_grow,
)
from firmware_bridge.harvard.codec import encode_reply as harvard_encode
from firmware_bridge.ne1000.codec import (
    Ne1000Reply,
    Ne1000Status,
    any_reply_end,
    decode_any_reply,
    display_number,
    encode_basic_reply,
    encode_reply,
    encode_safe_packet,
    floor_to_field,
    parse_number,
    reply_bytes_to_come,
)

printable = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=30
)
ne1000_replies = st.builds(
    Ne1000Reply,
    address=st.integers(0, 99),
    status=st.sampled_from(list(Ne1000Status)),
    data=printable.filter(lambda t: not t.startswith("?")),
)


@given(ne1000_replies, st.booleans(), st.binary(max_size=4).filter(lambda b: b"\x02" not in b))
def test_either_framing_is_found_whole_and_recognised(
    reply: Ne1000Reply, safe: bool, noise: bytes
) -> None:
    frame = encode_safe_packet(encode_reply(reply)) if safe else encode_basic_reply(reply)
    stream = noise + frame + b"\x02"  # the start of the next frame follows
    for cut in range(len(noise) + 1, len(noise) + len(frame)):
        assert any_reply_end(stream[:cut]) is None  # never whole before its last byte
    end = any_reply_end(stream)
    assert end == len(noise) + len(frame)
    assert decode_any_reply(stream[:end]) == (reply, safe)


@given(ne1000_replies, st.booleans(), st.binary(max_size=4).filter(lambda b: b"\x02" not in b))
def test_the_bytes_still_to_come_are_never_more_than_the_reply_has(
    reply: Ne1000Reply, safe: bool, noise: bytes
) -> None:
    """A port sleeps through what ``reply_bytes_to_come`` says is still on its way: never
    more than the reply has left, and exactly that once a safe packet's length is in."""
    frame = encode_safe_packet(encode_reply(reply)) if safe else encode_basic_reply(reply)
    stream = noise + frame
    for cut in range(len(stream) + 1):
        left = len(stream) - cut
        claimed = reply_bytes_to_come(stream[:cut])
        assert 0 <= claimed <= left
        if safe and cut >= len(noise) + 2:
            assert claimed == left
        if not safe:
            assert claimed == 0  # a basic reply ends at its ETX: nothing tells before


@given(st.decimals(min_value=0, max_value=9999, allow_nan=False, places=4))
def test_reply_numbers_carry_a_point_and_read_back_floored(value: Decimal) -> None:
    text = display_number(value)
    assert "." in text
    assert parse_number(text) == floor_to_field(value)


#: a pump's text line never begins like a prompt (``[NN]`` then ``:``, ``<``, ``>``, ``*`` or
#: ``T*``): the framing relies on it (``reply_may_grow``), as the pumps' replies bear out
_PROMPT_START = re.compile(r"^(\d\d)?(T\*|[:<>*])")
lines = st.lists(
    printable.filter(lambda t: not t.startswith(ERROR_HEADS) and not _PROMPT_START.match(t)),
    min_size=0,
    max_size=3,
)


@given(st.integers(0, 99), lines, st.sampled_from(list(Prompt)))
def test_a_harvard_reply_is_never_whole_before_its_last_byte(
    address: int, text: list[str], prompt: Prompt
) -> None:
    reply = HarvardReply(address, tuple(text), prompt)
    data = harvard_encode(reply)
    assert not reply_may_grow(data, len(text))  # the whole reply: taken at once
    for cut in range(1, len(data)):
        prefix = data[:cut]
        if reply_end(prefix) is not None:
            # looks complete (a prompt at its end) but is not: must be judged ambiguous
            assert reply_may_grow(prefix, len(text)), prefix
