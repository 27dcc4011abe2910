"""What a user meets first: the version, the command, the license, and a fast ``import varstore``.

The built artifacts themselves (sdist and wheel contents, a wheel installed in a fresh venv
and used from outside the checkout, by a user who cannot write to site-packages or $HOME)
are checked by scripts/release-check, which CI runs.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import varstore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str, cwd: str = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))


def test_version_is_written_once_and_reported_by_the_command(tmp_path):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    # pyproject.toml reads the version from the package, so the two cannot disagree.
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "varstore.__version__"}
    for args in (["-m", "varstore", "--version"], ["-m", "varstore.tools.cli", "--version"]):
        proc = _run(*args, cwd=str(tmp_path), COLUMNS="30")  # a narrow terminal must not wrap it
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"varstore {varstore.__version__} from "), proc.stdout
        assert proc.stdout.count("\n") == 1, proc.stdout


def test_python_m_varstore_is_the_command(tmp_path):
    import numpy as np

    import varstore as tf
    tf.reset_default_graph()
    tf.Variable(np.arange(3, dtype=np.float32), name="v")
    tf.global_variables_initializer().run()
    path = tf.train.Saver().save(None, str(tmp_path / "model.ckpt"))
    tf.reset_default_graph()
    proc = _run("-m", "varstore", "inspect", path, "--names", cwd=str(tmp_path))
    assert (proc.returncode, proc.stdout) == (0, "v\n"), proc.stderr
    proc = _run("-m", "varstore", cwd=str(tmp_path))
    assert proc.returncode == 2 and "usage: varstore" in proc.stderr


def test_the_license_is_shipped_and_named_by_its_spdx_id():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_import_varstore_loads_nothing_heavy_until_used():
    # `import varstore` took 0.7 s, 0.57 s of it in ml_dtypes' extension (numpy 2.x). What is
    # checked here is what is loaded, not how long it took: timings are not tests.
    heavy = ["ml_dtypes", "numba", "llvmlite", "ray", "cupy", "torch", "fsspec", "msgpack",
             "varstore.train", "varstore.checkpoint", "varstore.tools", "devices.cluster"]
    program = (f"import sys, varstore, devices; print(sorted(m for m in {heavy!r} if m in sys.modules)); "
               "import varstore as tf; tf.bfloat16, tf.train.Saver, tf.summary, devices.bfloat16; "
               f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    proc = _run("-c", program)
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.splitlines()
    assert before == "[]"
    # First use loads them, and the names are the real objects.
    assert "ml_dtypes" in after and "varstore.train" in after and "varstore.tools" in after


def test_lazy_names_are_listed_and_misspellings_are_attribute_errors():
    import devices
    for name in ("train", "tools", "checkpoint", "summary", "bfloat16"):
        assert name in dir(varstore)
    assert {"cluster", "bfloat16"} <= set(dir(devices))
    # tf.bfloat16 is TF's DType; it names the same numpy dtype as devices.bfloat16
    assert varstore.bfloat16 == devices.bfloat16 and np.dtype(varstore.bfloat16.as_numpy_dtype) == devices.bfloat16
    assert varstore.bfloat16.name == "bfloat16"
    with pytest.raises(AttributeError, match="Varible"):
        varstore.Varible  # noqa: B018 - the attribute access is the test
    with pytest.raises(AttributeError, match="bfloat17"):
        devices.bfloat17  # noqa: B018
