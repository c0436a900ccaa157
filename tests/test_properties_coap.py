"""Property tests (hypothesis) of the CoAP layer: options, message ids, tokens, blocks, describe.

The fuzz targets (``fuzz/``) throw arbitrary bytes at the decoder; these
build *valid* structures and check the laws the codec and the builders
promise for all of them.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_spark.coap import codec, from_device, to_device
from twisted_spark.coap.blockwise import Block
from twisted_spark.coap.codec import CoapError, CoapMessage, MessageType
from twisted_spark.coap.encoding import echo_token, request_token
from twisted_spark.coap.payloads import merge_describe, parse_function_call

settings.register_profile("suite", deadline=None, max_examples=150)
settings.load_profile("suite")

message_ids = st.integers(0, 0xFFFF)
#: The largest option delta (and length) CoAP's extended form can write.
MAX_DELTA = 0xFFFF + 269
tokens = st.binary(max_size=8)
option_values = st.binary(max_size=300)


@st.composite
def option_lists(draw):
    """Options in ascending number order, repeats allowed, deltas up to the 65804 limit."""
    numbers = sorted(draw(st.lists(st.integers(0, MAX_DELTA), max_size=8)))
    return tuple((number, draw(option_values)) for number in numbers)


@st.composite
def messages(draw):
    return CoapMessage(
        draw(st.sampled_from(list(MessageType))),
        draw(st.integers(0, 255)),
        draw(message_ids),
        draw(tokens),
        draw(option_lists()),
        draw(st.binary(max_size=600)),
    )


@given(messages())
def test_decode_inverts_encode(message):
    assert codec.decode(message.encode()) == message


@given(messages())
def test_encoding_is_canonical(message):
    wire = message.encode()
    assert codec.decode(wire).encode() == wire


@given(st.integers(MAX_DELTA + 1, 2**32), st.integers(0, MAX_DELTA))
def test_an_option_delta_too_large_to_write_is_a_coap_error(number, first):
    """Found by the property above: the encoder raised OverflowError, not CoapError."""
    with pytest.raises(CoapError, match="a delta is at most 65804"):
        codec.encode_message(MessageType.CON, 1, 1, b"", [(first, b""), (first + number, b"")])


@given(st.integers(0, 2**64))
def test_uint_options_round_trip_minimally(value):
    encoded = codec.encode_uint(value)
    assert codec.decode_uint(encoded) == value
    assert encoded[:1] != b"\x00"


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=0x10000)))
def test_message_ids_out_of_range_are_refused(mid):
    with pytest.raises(CoapError):
        codec.encode_message(MessageType.CON, 1, mid)


@given(st.binary(min_size=9, max_size=16))
def test_tokens_over_eight_bytes_are_refused(token):
    with pytest.raises(CoapError):
        codec.encode_message(MessageType.CON, 1, 1, token)


@given(st.integers(0, 255))
def test_request_tokens_are_one_byte_and_echoed_unchanged(token):
    assert request_token(token) == bytes((token,)) == echo_token(token)


@given(message_ids, st.integers(0, 255), st.text(min_size=1, max_size=60).filter(
    lambda name: "/" not in name), st.binary(max_size=63))
def test_a_function_call_carries_its_message_id_token_name_and_argument(mid, token, name, arg):
    message = codec.decode(to_device.function_call(mid, token, name, arg))
    assert (message.message_id, message.token) == (mid, bytes((token,)))
    assert parse_function_call(message) == (name, arg)


@given(message_ids, st.integers(0, 255), st.integers(-(2**31), 2**31 - 1))
def test_a_function_return_answers_with_the_same_token(mid, token, value):
    message = codec.decode(from_device.function_return(mid, token, value))
    assert message.message_id == mid and message.token == bytes((token,))
    assert int.from_bytes(message.payload, "big", signed=True) == value


@given(st.integers(0, 2**20 - 1), st.booleans(), st.integers(0, 6))
def test_block_options_round_trip(num, more, szx):
    block = Block(num, more, szx)
    assert Block.decode(block.encode()) == block


@given(st.binary(max_size=3))
def test_decoded_block_options_encode_to_the_same_value(value):
    try:
        block = Block.decode(value)
    except CoapError:
        assert value and value[-1] & 7 == 7
        return
    assert codec.decode_uint(block.encode()) == codec.decode_uint(value)


names = st.text(min_size=1, max_size=12)
describes = st.fixed_dictionaries(
    {},
    optional={
        "f": st.lists(names, unique=True, max_size=6),
        "v": st.dictionaries(names, st.sampled_from([1, 2, 4, 9]), max_size=6),
        "p": st.integers(0, 32),
    },
)


@given(describes)
def test_merging_into_nothing_copies_the_part(part):
    merged = merge_describe(None, part)
    assert merged == part and merged is not part


@given(describes, describes)
def test_merging_keeps_every_function_and_variable_once(old, new):
    old_copy, new_copy = repr(old), repr(new)
    merged = merge_describe(old, new)
    assert (repr(old), repr(new)) == (old_copy, new_copy)  # inputs untouched
    if "f" in old and "f" in new:
        assert merged["f"] == old["f"] + [name for name in new["f"] if name not in old["f"]]
    elif "f" in old or "f" in new:
        assert merged["f"] == new.get("f", old.get("f"))
    variables = merged.get("v", {})
    assert variables == {**old.get("v", {}), **new.get("v", {})}


@given(describes, describes)
def test_merging_the_same_part_twice_changes_nothing(old, new):
    once = merge_describe(old, new)
    assert merge_describe(once, new) == once
