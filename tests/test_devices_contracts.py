"""The shape of the devices package: what ``import devices`` loads, what imports what, and the
optional hooks of a backend as Protocols.

- ``devices.cluster`` is reachable after a plain ``import devices`` (README's spelling), yet
  ``import devices`` imports neither the cluster module nor Ray;
- devices never imports varstore (DESIGN.md, "Layers"), and the backends never import each
  other (shared helpers live in ``backends.arrays``, ``backends.base``, ``backends.dlpack``);
- the hooks varstore probes (``apply_updates``, ``start_read``, ``write_shard``,
  ``load_tensors``) are runtime-checkable Protocols a ps device satisfies and a CPU does not.
"""
from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import devices
from devices.backends import base
from devices.backends.ps import PsDevice

ROOT = pathlib.Path(devices.__file__).resolve().parent
BACKENDS = {"cpu", "gpu", "ps"}


def test_devices_cluster_after_a_plain_import_devices():
    assert devices.cluster is importlib.import_module("devices.cluster")
    assert callable(devices.cluster.start) and "cluster" in dir(devices)


def test_import_devices_imports_neither_the_cluster_nor_ray():
    code = ("import sys, devices\n"
            "assert 'ray' not in sys.modules and 'devices.cluster' not in sys.modules, 'loaded eagerly'\n"
            "assert devices.cluster.__name__ == 'devices.cluster'\n"
            "assert 'ray' not in sys.modules, 'devices.cluster imported ray at import'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_attribute_is_still_an_attribute_error():
    try:
        devices.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("devices.no_such_thing resolved")


def _imports(path: pathlib.Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved), and any
    string handed to importlib.import_module / __import__."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a module's package; an __init__'s is itself
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[:len(package) - node.level + 1]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            out += [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return out


def test_devices_never_imports_varstore():
    bad = {str(p.relative_to(ROOT.parent)): m for p in ROOT.rglob("*.py") for m in _imports(p)
           if m.split(".")[0] == "varstore"}
    assert not bad, bad


def test_backends_do_not_import_each_other():
    bad = []
    for p in (ROOT / "backends").rglob("*.py"):
        parts = p.relative_to(ROOT / "backends").with_suffix("").parts
        if parts[0] not in BACKENDS:
            continue  # shared ground: base, arrays, dlpack
        for m in _imports(p):
            names = m.split(".")
            if names[:2] == ["devices", "backends"] and len(names) > 2 and names[2] in BACKENDS - {parts[0]}:
                bad.append((str(p.relative_to(ROOT.parent)), m))
    assert not bad, bad


def test_the_optional_hooks_are_protocols_a_ps_device_satisfies():
    ps = PsDevice(devices.DeviceSpec.from_string("/job:ps/task:0"))
    cpu = devices.get_device("/cpu:0")
    hooks = (base.BatchedUpdates, base.AsyncReads, base.ShardWriter, base.TensorLoader, base.RemoteHooks)
    assert all(isinstance(ps, h) for h in hooks)
    assert not any(isinstance(cpu, h) for h in hooks)
    for h in hooks[:4]:  # each Protocol names a hook the base Device leaves None
        (name,) = [n for n in vars(h) if not n.startswith("_")]
        assert getattr(cpu, name) is None and callable(getattr(ps, name))
