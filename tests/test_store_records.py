"""The record copies every store makes: independent, canonical, and changed as asked."""

import dataclasses

import pytest

from twisted_spark.models import DeviceRecord
from twisted_spark.store import normalize_device


def test_a_copy_owns_its_variables_and_turns_functions_into_a_tuple():
    variables = {"temp": "double"}
    record = DeviceRecord("d1", owner="alice", functions=["led"], variables=variables)
    copy = normalize_device(record)
    assert copy == dataclasses.replace(record, functions=("led",))
    assert copy is not record and copy.variables is not variables
    variables["temp"] = "string"
    assert copy.variables == {"temp": "double"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.name = "changed"


def test_changes_apply_to_the_copy_only():
    record = DeviceRecord("d1", name="one", functions=("a",), variables={"v": "int32"})
    changed = normalize_device(record, name="two", functions=["b", "c"], last_heard=5.0)
    assert changed == DeviceRecord("d1", name="two", functions=("b", "c"),
                                   variables={"v": "int32"}, last_heard=5.0)
    assert record == DeviceRecord("d1", name="one", functions=("a",), variables={"v": "int32"})
    assert changed.variables is not record.variables
