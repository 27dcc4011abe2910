"""The manager: what exists, soft placement and strict mode, caching, and the GPU
backend as a CPU-only machine sees it. Written to pass on a machine with GPUs too:
a "missing GPU" is ``/gpu:{gpu_count()}``, or cupy is hidden with ``no_cupy``."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import devices
from devices import DeviceSpec, InvalidArgumentError, PlacementWarning, get_device, list_devices
from devices.backends import gpu
from devices.backends.cpu import CpuDevice
from devices.backends.ps import PsDevice
from devices.errors import UnavailableError

pytestmark = pytest.mark.usefixtures("placement")

CPU = "/device:CPU:0"


def missing_gpu(offset: int = 0) -> str:
    return f"/gpu:{gpu.gpu_count() + offset}"


def placement_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, PlacementWarning)]


def resolve_recording(spec, times=1):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")  # count every warning varstore issues, not Python's dedup
        devs = [get_device(spec) for _ in range(times)]
    return devs, placement_warnings(record)


# -- what exists ----------------------------------------------------------------------------

def test_list_devices_is_canonical_with_cpu_first():
    listed = list_devices()
    assert listed[0] == CPU
    assert len(listed) == 1 + gpu.gpu_count()
    assert listed[1:] == [f"/device:GPU:{i}" for i in range(gpu.gpu_count())]
    for name in listed:
        assert DeviceSpec.from_string(name).to_string() == name


def test_the_cpu_device():
    cpu = get_device("/cpu:0")
    assert isinstance(cpu, CpuDevice) and cpu.kind == "cpu"
    assert cpu.xp is np
    assert cpu.name == CPU and cpu.spec == DeviceSpec.from_string(CPU)


@pytest.mark.parametrize("spelling", [
    "/cpu:0", "/CPU:0", "/device:CPU:0", "/device:cpu:0", "/cpu:*", "/device:CPU", "", None,
    DeviceSpec(device_type="CPU", device_index=0),
    "/job:localhost/replica:0/task:0/device:CPU:0",  # TF's full name of the local CPU
    "/job:localhost",
    "/replica:0/task:0",
])
def test_every_name_of_the_local_cpu_is_the_same_cached_device(spelling):
    devs, warned = resolve_recording(spelling, times=2)
    assert devs[0] is devs[1] is get_device(CPU)
    assert warned == []


def test_exists_does_not_fall_back_or_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert devices.manager.exists("/cpu:0")
        assert not devices.manager.exists(missing_gpu())
        assert not devices.manager.exists("/job:ps/task:7")
        assert not devices.manager.exists("/cpu:1")


def test_memory_summary_lists_the_cpu():
    lines = devices.memory_summary().splitlines()
    assert lines[0].split() == ["device", "in", "use", "peak"]
    assert any(line.startswith(CPU) for line in lines[1:])


# -- soft placement -------------------------------------------------------------------------

def test_soft_placement_is_on_by_default():
    assert devices.soft_placement() is True


def test_missing_gpu_lands_on_the_cpu_with_one_warning(placement):
    spec = missing_gpu()
    devs, warned = resolve_recording(spec, times=3)
    assert all(d is get_device(CPU) for d in devs)
    assert len(warned) == 1
    canonical = DeviceSpec.from_string(spec).to_string()
    assert repr(canonical) in warned[0] and CPU in warned[0]


def test_one_warning_per_spec_not_per_spelling():
    n = gpu.gpu_count()
    _, first = resolve_recording(f"/gpu:{n + 5}")
    _, same = resolve_recording(f"/device:GPU:{n + 5}")
    _, same_lower = resolve_recording(f"/device:gpu:{n + 5}")
    _, other = resolve_recording(f"/gpu:{n + 6}")
    assert (len(first), len(same), len(same_lower), len(other)) == (1, 0, 0, 1)


def test_placement_warning_is_a_user_warning():
    assert issubclass(PlacementWarning, UserWarning)
    assert devices.PlacementWarning is devices.manager.PlacementWarning
    with pytest.warns(UserWarning):
        get_device(missing_gpu(1))


@pytest.mark.parametrize("spec", [
    "/job:ps/task:7",
    "/job:ps/task:7/device:CPU:0",
    "/job:worker/replica:0/task:3",
    "/cpu:1",  # one CPU device here: CPU:0
    "/device:TPU:0",
    "/job:localhost/task:1",
])
def test_places_this_machine_lacks_land_on_the_cpu(spec):
    devs, warned = resolve_recording(spec, times=2)
    assert devs[0] is devs[1] is get_device(CPU)
    assert len(warned) == 1 and repr(DeviceSpec.from_string(spec).to_string()) in warned[0]


def test_concurrent_first_requests_warn_once():
    spec = missing_gpu(11)
    n = 8
    start = threading.Barrier(n)
    got = []

    def resolve():
        start.wait(timeout=10)
        got.append(get_device(spec))

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=resolve) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert len(got) == n and all(d is get_device(CPU) for d in got)
    assert len(placement_warnings(record)) == 1


def test_soft_fallback_is_not_cached_as_the_answer():
    # After turning strict mode on, a missing device must fail even if it fell back before.
    spec = missing_gpu(2)
    with pytest.warns(PlacementWarning):
        assert get_device(spec) is get_device(CPU)
    devices.set_soft_placement(False)
    with pytest.raises(InvalidArgumentError):
        get_device(spec)


# -- strict mode ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["missing-gpu", "/job:ps/task:7", "/cpu:1"])
def test_strict_mode_names_the_spec_and_the_devices_that_exist(spec):
    spec = missing_gpu() if spec == "missing-gpu" else spec
    devices.set_soft_placement(False)
    assert devices.soft_placement() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # strict mode raises; it does not also warn
        with pytest.raises(InvalidArgumentError) as info:
            get_device(spec)
    message = str(info.value)
    assert repr(DeviceSpec.from_string(spec).to_string()) in message
    for name in list_devices():
        assert name in message


def test_strict_mode_still_serves_devices_that_exist():
    devices.set_soft_placement(False)
    assert get_device("/cpu:0") is get_device(CPU)
    assert get_device("/job:localhost/replica:0/task:0/device:CPU:0") is get_device(CPU)


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "no", "off", " 0 "])
def test_environment_turns_soft_placement_off(monkeypatch, value):
    monkeypatch.setenv("VARSTORE_SOFT_PLACEMENT", value)
    assert devices.soft_placement() is False
    with pytest.raises(InvalidArgumentError):
        get_device(missing_gpu())


@pytest.mark.parametrize("value", ["1", "true", "yes", ""])
def test_environment_can_leave_soft_placement_on(monkeypatch, value):
    monkeypatch.setenv("VARSTORE_SOFT_PLACEMENT", value)
    assert devices.soft_placement() is True
    with pytest.warns(PlacementWarning):
        assert get_device(missing_gpu()) is get_device(CPU)


def test_set_soft_placement_overrides_the_environment_and_none_restores_it(monkeypatch):
    monkeypatch.setenv("VARSTORE_SOFT_PLACEMENT", "0")
    devices.set_soft_placement(True)
    with pytest.warns(PlacementWarning):
        assert get_device(missing_gpu()) is get_device(CPU)
    devices.set_soft_placement(None)
    with pytest.raises(InvalidArgumentError):
        get_device(missing_gpu())


def test_per_call_soft_argument_overrides_the_setting():
    devices.set_soft_placement(False)
    with pytest.warns(PlacementWarning):
        assert get_device(missing_gpu(), soft=True) is get_device(CPU)
    devices.set_soft_placement(True)
    with pytest.raises(InvalidArgumentError):
        get_device(missing_gpu(), soft=False)


def test_bad_spec_is_invalid_argument_even_with_soft_placement():
    with pytest.raises(InvalidArgumentError):
        get_device("/gpu:zero")


# -- remote tasks ---------------------------------------------------------------------------

def test_a_registered_remote_resolver_serves_ps_tasks_until_removed():
    def resolver(spec):
        return PsDevice(spec) if spec.job == "ps" and spec.task == 0 else None

    devices.manager.register_remote(resolver)
    try:
        ps0 = get_device("/job:ps/task:0")
        assert isinstance(ps0, PsDevice) and ps0.name == "/job:ps/task:0"
        assert get_device("/job:ps/task:0") is ps0
        with pytest.raises(UnavailableError):  # the interface exists; the cluster does not
            ps0.empty((2,), "float32")
        with pytest.raises(UnavailableError):
            _ = ps0.xp
        assert not ps0.holds(np.zeros(2))
        with pytest.warns(PlacementWarning):  # task 1 does not exist in this "cluster"
            assert get_device("/job:ps/task:1") is get_device(CPU)
    finally:
        devices.manager.register_remote(None)
    # Removing the resolver forgets the cached remote devices.
    with pytest.warns(PlacementWarning):
        assert get_device("/job:ps/task:0") is get_device(CPU)


# -- the GPU backend on a machine without cupy or a card ------------------------------------

def test_without_cupy_no_gpu_exists(no_cupy):
    assert gpu.cupy_module() is None
    assert gpu.gpu_count() == 0
    assert list_devices() == [CPU]
    assert not devices.manager.exists("/gpu:0")


def test_without_cupy_a_gpu_spec_lands_on_the_cpu(no_cupy):
    devs, warned = resolve_recording("/gpu:0", times=2)
    assert devs[0] is devs[1] is get_device(CPU)
    assert len(warned) == 1 and "'/device:GPU:0'" in warned[0]


def test_without_cupy_strict_mode_lists_only_the_cpu(no_cupy):
    devices.set_soft_placement(False)
    with pytest.raises(InvalidArgumentError) as info:
        get_device("/gpu:0")
    assert "'/device:GPU:0'" in str(info.value) and f"['{CPU}']" in str(info.value)


def test_without_cupy_host_arrays_still_transfer(no_cupy):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert devices.device_of(a) is get_device(CPU)
    assert devices.to_host(a) is a
    assert b"".join(devices.host_chunks(a, 5)) == a.tobytes()


def test_this_machine_has_no_cupy_or_no_card():
    # The CPU-only CI this suite targets: cupy absent, or present with no usable card.
    if gpu.cupy_module() is not None and gpu.gpu_count() > 0:
        pytest.skip("a GPU is present; tests/gpu covers this machine")
    assert gpu.gpu_count() == 0
    assert list_devices() == [CPU]


def _run_python(code: str, first_on_path: str | None = None) -> subprocess.CompletedProcess:
    # The child finds devices where this process did, whatever the working directory.
    path = ([first_on_path] if first_on_path else []) + [p for p in sys.path if p]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    full_env.pop("VARSTORE_SOFT_PLACEMENT", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env=full_env)


def test_import_devices_works_when_cupy_cannot_be_imported():
    proc = _run_python("""
        import sys
        sys.modules["cupy"] = None  # import cupy -> ImportError
        import warnings, devices
        print(devices.list_devices())
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(devices.get_device("/gpu:0").name, len(w))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["['/device:CPU:0']", "/device:CPU:0 1"]


def test_import_devices_works_when_cupy_fails_to_load(tmp_path):
    # A cupy whose CUDA libraries fail to load raises something other than ImportError.
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text(
        "raise OSError('libcudart.so.12: cannot open shared object file')\n")
    proc = _run_python("""
        import devices
        from devices.backends import gpu
        print(gpu.cupy_module(), gpu.gpu_count(), devices.list_devices())
    """, first_on_path=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None 0 ['/device:CPU:0']"


def test_import_devices_works_when_cupy_has_no_driver(tmp_path):
    # cupy installed on a machine without a GPU: it imports, the runtime call fails.
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text(textwrap.dedent("""
        class CUDARuntimeError(RuntimeError):
            pass
        class _Runtime:
            @staticmethod
            def getDeviceCount():
                raise CUDARuntimeError('cudaErrorInsufficientDriver')
        class cuda:
            runtime = _Runtime
    """))
    proc = _run_python("""
        import devices
        from devices.backends import gpu
        print(gpu.cupy_module() is not None, gpu.gpu_count(), devices.list_devices())
    """, first_on_path=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True 0 ['/device:CPU:0']"
