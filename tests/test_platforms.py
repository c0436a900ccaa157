"""The platform facts, pinned: PROTOCOL.md §4.5, §6.3, §7 and §11.2 in one table."""

import pytest

from twisted_spark import platforms


@pytest.mark.parametrize(
    ("platform_id", "core_class"),
    [(None, True), (0, True), (1, True), (6, False), (8, False), (10, False)],
)
def test_what_a_core_is(platform_id, core_class):
    """§4.5: the Core's 640-byte buffer is also that of platform ids < 2; a
    Hello without a platform id is a Core's."""
    assert platforms.is_core_class(platform_id) is core_class


def test_core_limits():
    limits = platforms.limits_for(None)
    assert limits is platforms.limits_for(0) is platforms.limits_for(1)
    assert (limits.buffer_size, limits.argument_limit) == (640, 63)
    assert (limits.default_chunk, limits.max_chunk, limits.max_binary) == (256, 594, 108_000)


@pytest.mark.parametrize("platform_id", [6, 8, 10, 2, 0xFFFF])
def test_photon_class_limits(platform_id):
    limits = platforms.limits_for(platform_id)
    assert (limits.buffer_size, limits.argument_limit) == (800, 622)
    # The largest chunk leaves a fast chunk's 16 header bytes and 16 bytes of padding.
    assert (limits.default_chunk, limits.max_chunk, limits.max_binary) == (512, 768, 384_000)
    assert limits.max_chunk == limits.buffer_size - 16 - 16


def test_names_and_ids():
    assert platforms.NAMES == {0: "core", 6: "photon", 8: "p1", 10: "electron"}
    assert platforms.IDS["photon"] == platforms.PHOTON == 6
    assert platforms.name_of(8) == "p1"
    assert platforms.name_of(99) == "99"
    assert platforms.name_of(None) == ""
