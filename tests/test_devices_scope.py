"""``with devices.device(...)``: merging, clearing, device functions, unwinding, threads."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import devices
from devices import DeviceSpec, InvalidArgumentError, OpDescription, current_device, device
from devices.scope import resolve


def here() -> str:
    return current_device().to_string()


def test_no_scope_requests_nothing():
    assert current_device() == DeviceSpec()


def test_tf_merge_chain_through_scopes():
    # TF's documented chain, as nested scopes: inner fields win, unset ones are inherited.
    with device("/device:GPU:0"):
        assert here() == "/device:GPU:0"
        with device("/job:worker"):
            assert here() == "/job:worker/device:GPU:0"
            with device("/device:CPU:0"):
                assert here() == "/job:worker/device:CPU:0"
                with device("/job:ps"):
                    assert here() == "/job:ps/device:CPU:0"
                assert here() == "/job:worker/device:CPU:0"
            assert here() == "/job:worker/device:GPU:0"
        assert here() == "/device:GPU:0"
    assert here() == ""


def test_scope_accepts_specs_and_every_spelling():
    with device(DeviceSpec(job="ps", task=3)), device("/GPU:1"):
        assert here() == "/job:ps/task:3/device:GPU:1"


def test_device_none_clears_outer_scopes():
    with device("/job:ps/task:1"), device("/gpu:0"):
        with device(None):
            assert current_device() == DeviceSpec()
            with device("/cpu:0"):
                # Scopes inside the reset start from nothing: no job, no task.
                assert here() == "/device:CPU:0"
        assert here() == "/job:ps/task:1/device:GPU:0"


def test_device_functions_receive_the_op_and_the_spec_so_far():
    seen = []

    def fn(op):
        seen.append(op)
        return None

    with device("/job:ps"), device(fn), device("/gpu:1"):
        spec = resolve(OpDescription("Variable", name="layer/w", shape=(784, 200), dtype="float32"))
    assert spec.to_string() == "/job:ps/device:GPU:1"  # None keeps the spec
    (op,) = seen
    assert isinstance(op, OpDescription)
    assert (op.kind, op.type, op.name, op.shape, op.dtype) == (
        "Variable", "Variable", "layer/w", (784, 200), "float32")
    # Requested so far: the inner scopes only (the outer /job:ps has not been applied yet).
    assert op.requested == DeviceSpec.from_string("/gpu:1")
    assert op.device == "/device:GPU:1"


def test_current_device_passes_the_kind_to_device_functions():
    kinds = []
    with device(lambda op: kinds.append(op.kind)):
        current_device("Variable")
        current_device()
    assert kinds == ["Variable", "Op"]


def test_device_function_return_replaces_the_spec_and_outer_specs_fill_in():
    def by_kind(op):
        return "/job:ps/task:0" if op.type == "Variable" else "/cpu:0"

    with device("/job:worker/gpu:0"), device(by_kind), device("/gpu:1"):
        # The function's result replaces "/gpu:1"; the outer scope fills unset fields.
        assert current_device("Variable").to_string() == "/job:ps/task:0/device:GPU:0"
        assert current_device("MatMul").to_string() == "/job:worker/device:CPU:0"


def test_device_function_may_return_a_spec_and_see_tf_style_device_string():
    def fn(op):
        assert op.device == ""
        return DeviceSpec(job="ps", task=2)

    with device(fn):
        assert here() == "/job:ps/task:2"


def test_device_function_round_robin_like_replica_device_setter():
    tasks = iter(range(100))

    def round_robin(op):
        if op.type == "Variable":
            return f"/job:ps/task:{next(tasks) % 2}"
        return op.device

    with device(round_robin):
        got = [current_device("Variable").to_string() for _ in range(4)]
        assert current_device("Add") == DeviceSpec()
    assert got == ["/job:ps/task:0", "/job:ps/task:1"] * 2


def test_device_function_returning_garbage_is_invalid_argument():
    with device(lambda op: 3.5):
        with pytest.raises(InvalidArgumentError):
            current_device()
        # The inner function's result is parsed when used.
        with device(lambda op: "/job:"), pytest.raises(InvalidArgumentError):
            current_device()


def test_device_function_is_not_applied_under_a_reset():
    calls = []
    with device(lambda op: calls.append(op) or "/job:ps"), device(None):
        assert current_device() == DeviceSpec()
    assert calls == []


@pytest.mark.parametrize("bad", [3.5, 7, b"/cpu:0", ["/cpu:0"], object()])
def test_invalid_scope_argument_is_invalid_argument_and_pushes_nothing(bad):
    with device("/job:ps"):
        with pytest.raises(InvalidArgumentError), device(bad):
            pass  # pragma: no cover
        assert here() == "/job:ps"


def test_malformed_scope_string_is_invalid_argument():
    with pytest.raises(InvalidArgumentError) as info, device("/gpu:abc"):
        pass  # pragma: no cover
    assert "'/gpu:abc'" in str(info.value)
    assert here() == ""


class Boom(Exception):
    pass


def test_exception_inside_nested_scopes_unwinds_every_level():
    with device("/job:ps"):
        with pytest.raises(Boom), device("/task:1"), device("/gpu:0"), device(None), device("/cpu:0"):
            raise Boom
        assert here() == "/job:ps"
    assert here() == ""


def test_exception_from_a_device_function_leaves_the_stack_intact():
    def broken(op):
        raise Boom

    with device("/job:ps"):
        with device(broken), device("/gpu:0"), pytest.raises(Boom):
            current_device()
        assert here() == "/job:ps"


def test_a_leaked_inner_scope_is_dropped_when_the_outer_one_exits():
    # An inner scope entered by hand and never exited (a generator abandoned mid-way)
    # must not outlive the scope around it.
    with device("/job:ps"):
        leaked = device("/gpu:0")
        leaked.__enter__()
        assert here() == "/job:ps/device:GPU:0"
    assert here() == ""


SCOPE_ARGS = st.one_of(
    st.none(),
    st.sampled_from(["/job:ps", "/job:worker", "/task:1", "/replica:2", "/gpu:0", "/cpu:0",
                     "/device:GPU:*", "/job:ps/task:3/gpu:1"]),
)


@given(st.lists(SCOPE_ARGS, max_size=8), st.integers(0, 8))
def test_random_nesting_matches_a_model_and_unwinds_after_errors(args, fail_at):
    def model(stack):
        spec = DeviceSpec()
        for entry in reversed(stack):
            if entry is None:
                break
            spec = DeviceSpec.from_string(entry).make_merged_spec(spec)
        return spec

    def enter(i):
        if i == len(args):
            return
        with device(args[i]):
            assert current_device() == model(args[: i + 1])
            if i == fail_at:
                raise Boom
            enter(i + 1)
            assert current_device() == model(args[: i + 1])

    try:
        enter(0)
    except Boom:
        assert fail_at < len(args)
    assert current_device() == DeviceSpec()


def test_each_thread_has_its_own_stack():
    specs = ["/job:ps/task:0", "/gpu:1", "/job:worker/cpu:0", "/replica:3"]
    entered = threading.Barrier(len(specs))
    exited = threading.Barrier(len(specs))
    errors = []

    def worker(spec):
        try:
            assert current_device() == DeviceSpec()
            with device(spec):
                entered.wait(timeout=10)  # every thread is inside its own scope now
                assert current_device() == DeviceSpec.from_string(spec)
                with device("/task:9"):
                    assert current_device() == DeviceSpec.from_string(spec).make_merged_spec("/task:9")
                entered.wait(timeout=10)
            exited.wait(timeout=10)  # the others may still be inside theirs
            assert current_device() == DeviceSpec()
        except BaseException as e:  # reported below; a failing thread breaks the barriers
            errors.append(e)
            entered.abort()
            exited.abort()

    with device("/job:main"):
        threads = [threading.Thread(target=worker, args=(s,)) for s in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert here() == "/job:main"  # the main thread's scope is untouched and unseen
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_new_threads_do_not_inherit_the_parent_scope():
    got = []
    with device("/job:ps/gpu:0"):
        t = threading.Thread(target=lambda: got.append(current_device()))
        t.start()
        t.join()
    assert got == [DeviceSpec()]


def test_gpu_scope_without_a_card_records_the_request(no_cupy):
    # Entering a GPU scope would make the GPU current for cupy; without a card it must
    # neither fail nor change the request (placement is decided later, by the manager).
    with device("/gpu:0"):
        assert here() == "/device:GPU:0"
        with pytest.warns(devices.PlacementWarning):
            assert devices.get_device(current_device()).kind == "cpu"
