"""DeviceSpec: TF 1.x's device-string grammar, canonical form, immutability, merge laws."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import devices
from devices import DeviceSpec, InvalidArgumentError
from devices.errors import OpError

# -- strategies ---------------------------------------------------------------------------

JOBS = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True)
# Small numbers are the common case; the parser accepts up to nine digits.
INTS = st.one_of(st.integers(0, 9), st.integers(0, 10**9 - 1))
TYPES = st.one_of(
    st.sampled_from(["CPU", "GPU", "cpu", "gpu", "Gpu", "TPU", "XLA_GPU"]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,7}", fullmatch=True),
)


@st.composite
def specs(draw):
    device_type = draw(st.none() | TYPES)
    return DeviceSpec(
        job=draw(st.none() | JOBS),
        replica=draw(st.none() | INTS),
        task=draw(st.none() | INTS),
        device_type=device_type,
        # None with a type is "any index" (the '*' of the grammar).
        device_index=draw(st.none() | INTS) if device_type is not None else None,
    )


def random_case(draw, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(word, flips))


@st.composite
def spec_strings(draw):
    """A device string as a user might type it, and the fields it must parse to."""
    expected = {}
    parts = []
    if draw(st.booleans()):
        expected["job"] = draw(JOBS)
        parts.append(f"job:{expected['job']}")
    for name in ("replica", "task"):
        if draw(st.booleans()):
            expected[name] = draw(INTS)
            parts.append(f"{name}:{expected[name]}")
    if draw(st.booleans()):
        index = draw(st.none() | INTS)
        index_text = "*" if index is None else str(index)
        if draw(st.booleans()):  # shorthand /cpu:N, /gpu:N in any case
            kind = draw(st.sampled_from(["cpu", "gpu"]))
            parts.append(f"{random_case(draw, kind)}:{index_text}")
        else:
            kind = draw(TYPES)
            parts.append(f"device:{kind}:{index_text}")
        expected["device_type"] = kind.upper()
        expected["device_index"] = index
    # TF accepts the fields in any order.
    parts = draw(st.permutations(parts))
    return "".join("/" + p for p in parts), expected


# -- parsing and canonical form -----------------------------------------------------------

@given(specs())
def test_parse_of_to_string_round_trips(spec):
    text = spec.to_string()
    assert DeviceSpec.from_string(text) == spec
    # The canonical string is a fixed point.
    assert DeviceSpec.from_string(text).to_string() == text


@given(spec_strings())
def test_typed_strings_parse_to_their_fields(case):
    text, expected = case
    spec = DeviceSpec.from_string(text)
    for field in ("job", "replica", "task", "device_type", "device_index"):
        assert getattr(spec, field) == expected.get(field), (text, field)
    assert DeviceSpec.from_string(spec.to_string()) == spec


@pytest.mark.parametrize("text, canonical", [
    ("/job:ps/replica:0/task:7/device:GPU:0", "/job:ps/replica:0/task:7/device:GPU:0"),
    ("/task:7/gpu:0/job:ps/replica:0", "/job:ps/replica:0/task:7/device:GPU:0"),
    ("/job:ps/task:7/gpu:0", "/job:ps/task:7/device:GPU:0"),
    ("/gpu:1", "/device:GPU:1"),
    ("/GPU:1", "/device:GPU:1"),
    ("/cpu:0", "/device:CPU:0"),
    ("/device:cpu:3", "/device:CPU:3"),
    ("/gpu:*", "/device:GPU:*"),
    ("/device:GPU:*", "/device:GPU:*"),
    ("/device:GPU", "/device:GPU:*"),  # TF's C++ grammar: a type with no index is "any"
    ("/replica:2", "/replica:2"),
    ("/job:worker", "/job:worker"),
    ("", ""),
    ("/", ""),
])
def test_canonical_form_leaves_unset_fields_out(text, canonical):
    spec = DeviceSpec.from_string(text)
    assert spec.to_string() == canonical
    assert str(spec) == canonical
    assert devices.spec.canonical(text) == canonical


def test_unset_fields_are_none_and_empty_spec_is_empty():
    spec = DeviceSpec.from_string("/job:ps")
    assert (spec.replica, spec.task, spec.device_type, spec.device_index) == (None,) * 4
    assert DeviceSpec.from_string("").is_empty
    assert DeviceSpec.from_string(None).is_empty
    assert not spec.is_empty


def test_from_string_passes_a_spec_through():
    spec = DeviceSpec(job="ps", task=1)
    assert DeviceSpec.from_string(spec) is spec
    assert DeviceSpec.parse_from_string("/job:ps/task:1") == spec


def test_constructor_normalises_type_case():
    assert DeviceSpec(device_type="gpu", device_index=0) == DeviceSpec.from_string("/device:GPU:0")
    assert DeviceSpec(device_type="gpu").device_type == "GPU"


@pytest.mark.parametrize("fields", [
    {"job": "1ps"},
    {"job": ""},
    {"job": 3},
    {"replica": -1},
    {"task": True},  # a bool is an int to Python, never a task number
    {"task": 1.0},
    {"task": "1"},
    {"task": 10**9},  # would print a string the parser refuses
    {"device_type": "G-PU"},
    {"device_type": "GPU", "device_index": -2},
    {"device_index": 0},  # an index without a type
])
def test_constructor_validates_like_the_parser(fields):
    with pytest.raises(InvalidArgumentError):
        DeviceSpec(**fields)


@given(specs())
def test_replace_validates_and_keeps_other_fields(spec):
    assert spec.replace(job="other").job == "other"
    assert spec.replace(job="other").task == spec.task
    with pytest.raises(InvalidArgumentError):
        spec.replace(task=-1)


# -- immutability and hashing -------------------------------------------------------------

@pytest.mark.parametrize("field", ["job", "replica", "task", "device_type", "device_index"])
def test_specs_are_immutable(field):
    spec = DeviceSpec.from_string("/job:ps/replica:0/task:1/gpu:0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(spec, field, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(spec, field)
    assert spec.to_string() == "/job:ps/replica:0/task:1/device:GPU:0"


def test_merge_from_returns_a_new_spec_and_leaves_self_alone():
    spec = DeviceSpec.from_string("/job:ps")
    merged = spec.merge_from("/gpu:0")
    assert merged.to_string() == "/job:ps/device:GPU:0"
    assert spec.to_string() == "/job:ps"


def test_equal_spellings_are_equal_with_equal_hashes():
    spellings = ["/gpu:0", "/GPU:0", "/device:GPU:0", "/device:gpu:0", "gpu:0"]
    parsed = [DeviceSpec.from_string(s) for s in spellings]
    assert len(set(parsed)) == 1
    assert len({hash(p) for p in parsed}) == 1
    table = {parsed[0]: "a GPU"}
    for p in parsed:
        assert table[p] == "a GPU"
    assert DeviceSpec.from_string("/gpu:1") not in table
    assert DeviceSpec.from_string("/gpu:*") not in table


@given(specs())
def test_specs_are_dict_keys(spec):
    copy = DeviceSpec.from_string(spec.to_string())
    assert copy == spec and hash(copy) == hash(spec)
    assert {spec: 1}[copy] == 1


# -- merge laws ---------------------------------------------------------------------------

EMPTY = DeviceSpec()


@given(specs())
def test_merging_empty_is_identity_both_ways(s):
    assert s.make_merged_spec(EMPTY) == s
    assert EMPTY.make_merged_spec(s) == s
    assert s.make_merged_spec(None) == s
    assert s.make_merged_spec("") == s


@given(specs())
def test_merge_is_idempotent(s):
    assert s.make_merged_spec(s) == s


@given(specs(), specs(), specs())
def test_merge_is_associative(a, b, c):
    assert a.make_merged_spec(b).make_merged_spec(c) == a.make_merged_spec(b.make_merged_spec(c))


@given(specs(), specs())
def test_inner_fields_win_and_unset_inner_fields_keep_outer(outer, inner):
    merged = outer.make_merged_spec(inner)
    for field in ("job", "replica", "task"):
        want = getattr(inner, field) if getattr(inner, field) is not None else getattr(outer, field)
        assert getattr(merged, field) == want, field


@given(specs(), specs())
def test_device_type_and_index_move_together(outer, inner):
    merged = outer.make_merged_spec(inner)
    source = inner if inner.device_type is not None else outer
    assert (merged.device_type, merged.device_index) == (source.device_type, source.device_index)


@given(specs(), specs())
def test_merge_accepts_strings_and_merge_from_is_the_same(outer, inner):
    assert outer.make_merged_spec(inner.to_string()) == outer.make_merged_spec(inner)
    assert outer.merge_from(inner) == outer.make_merged_spec(inner)


def test_inner_cpu_over_outer_gpu_takes_the_cpu_index():
    merged = DeviceSpec.from_string("/gpu:1").make_merged_spec("/cpu:0")
    assert merged.to_string() == "/device:CPU:0"
    # And an inner "any index" does not inherit the outer index.
    merged = DeviceSpec.from_string("/gpu:1").make_merged_spec("/cpu:*")
    assert merged.to_string() == "/device:CPU:*"


def test_tf_merge_chain_on_specs():
    # The chain from TF's DeviceSpec documentation; each step merges a new spec in.
    s = DeviceSpec.from_string("/device:GPU:0")
    s = s.make_merged_spec("/job:worker")
    assert s.to_string() == "/job:worker/device:GPU:0"
    s = s.make_merged_spec("/device:CPU:0")
    assert s.to_string() == "/job:worker/device:CPU:0"
    s = s.make_merged_spec("/job:ps")
    assert s.to_string() == "/job:ps/device:CPU:0"


# -- malformed strings --------------------------------------------------------------------

@pytest.mark.parametrize("text, names", [
    ("/job:", "'job'"),
    ("/job:1ps", "'job'"),
    ("/job:p s", "'job'"),
    ("/task:x", "'task'"),
    ("/task:-1", "'task'"),
    ("/task:01", "'task'"),  # stricter than TF's atoi: one spelling per number
    ("/replica:1.5", "'replica'"),
    ("/task:1000000000", "'task'"),
    ("//cpu:0", "empty field"),
    ("/cpu:0/", "empty field"),
    ("/cpu:0/gpu:0", "two device types"),
    ("/device:GPU:0/cpu:1", "two device types"),
    ("/device:GPU:0:1", "'device:GPU:0:1'"),
    ("/device:", "'device'"),
    ("/device:G-PU:0", "'device'"),
    ("/foo:3", "'foo:3'"),
    ("/gpu:", "'device index'"),
    ("/gpu:abc", "'device index'"),
    ("/gpu:-1", "'device index'"),
    ("/job:a/job:b", "'job' twice"),
    ("/job:ps/task:1/task:2", "'task' twice"),
    ("/tas\u212a:1", "'tas\u212a:1'"),  # the Kelvin sign lower-cases to 'k': not a field name
    # TF's Python DeviceSpec accepts a bare "cpu" (type, any index), but TF's C++ grammar
    # (DeviceNameUtils::ParseFullName) requires "/cpu:N" for the legacy shorthand; the long
    # form "/device:CPU" is the way to say "any index". varstore follows the C++ grammar.
    ("cpu", "'cpu'"),
    ("/cpu", "'cpu'"),
    ("/gpu", "'gpu'"),
])
def test_malformed_strings_name_the_string_and_the_field(text, names):
    with pytest.raises(InvalidArgumentError) as info:
        DeviceSpec.from_string(text)
    message = str(info.value)
    assert repr(text) in message
    assert names in message
    assert isinstance(info.value, OpError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [3, 3.5, b"/cpu:0", ["/cpu:0"], object()])
def test_non_string_input_is_invalid_argument(value):
    with pytest.raises(InvalidArgumentError) as info:
        DeviceSpec.from_string(value)
    assert type(value).__name__ in str(info.value)


GRAMMAR_ALPHABET = st.sampled_from(list("/:*0123456789-._ aAjJ") + [
    "job", "replica", "task", "device", "cpu", "gpu", "CPU", "GPU", "ps", "worker", "\u212a", "\u0131",
])


@settings(max_examples=300)
@given(st.one_of(st.text(), st.lists(GRAMMAR_ALPHABET, max_size=12).map("".join)))
def test_arbitrary_text_parses_to_a_round_tripping_spec_or_is_invalid(text):
    try:
        spec = DeviceSpec.from_string(text)
    except InvalidArgumentError as e:
        assert repr(text) in str(e)
        return
    assert DeviceSpec.from_string(spec.to_string()) == spec

