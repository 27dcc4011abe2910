"""Real TensorFlow as the oracle for TF 1.x variable programs (issue 13, part 4).

Every program in ``oracle_progs_*.py`` runs under real TensorFlow (``tensorflow.compat.v1``
with TF 1.x behaviour; one subprocess for all graph-mode programs, one for the eager ones,
started once per session) and, one test each, under varstore in this process. The results
must agree: values (allclose), names, shapes, dtypes, and error classes (varstore's exception
must be an instance of varstore.errors.<TF's class name>, or builtins.<name>).

TensorFlow lives in its own interpreter: ``VARSTORE_TF_PYTHON`` (.ci/run sets it), or this
one if it has tensorflow. Without it every test here skips.

A list of what fails: ``python -m pytest tests/tf_oracle -q``.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import oracle_harness
import pytest
from oracle_harness import HERE, REGISTRY, Raised, compare, decode, load_programs, normalize

load_programs()
DOC = Path(HERE).parents[1] / "docs" / "coming-from-tf1.md"


@pytest.fixture(scope="session")
def tf_results():
    """TF's results for every program (both subprocesses run at once, once per session); every
    test that uses them skips where there is no TensorFlow."""
    results, why = oracle_harness.tf_results()
    if why:
        pytest.skip(why)
    return results


def _kept_rows() -> set[str]:
    """First cells of the rows of the "Kept differences" table in docs/coming-from-tf1.md."""
    text = DOC.read_text()
    m = re.search(r"^## Kept differences\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        return set()
    rows = set()
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells and not set(cells[0]) <= set("-: ") and cells[0] != "TF 1.x":
            rows.add(cells[0])
    return rows


def _run_varstore(prog, tmp_path):
    import varstore as vs
    from devices import PlacementWarning
    vs.reset_default_graph()
    eager = prog.mode == "eager"
    if eager:
        vs.enable_eager_execution()
    elif getattr(vs, "executing_eagerly", lambda: False)():  # an earlier program's eager mode leaked
        vs.disable_eager_execution()
    try:
        with warnings.catch_warnings():
            # "/gpu:0" on this machine, "/job:ps/task:0" without a cluster: the kept difference.
            warnings.simplefilter("ignore", PlacementWarning)
            try:
                return normalize(prog(vs, str(tmp_path)))
            except Exception as e:  # an error TF raised too is a result; anything else fails below
                return normalize(e)
    finally:
        sess = vs.get_default_session()
        if sess is not None:
            sess.close()
        if eager and hasattr(vs, "disable_eager_execution"):
            vs.disable_eager_execution()
        vs.reset_default_graph()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_program(name, tf_results, tmp_path):
    prog = REGISTRY[name]
    raw = tf_results[name]
    want = decode(raw)
    got = _run_varstore(prog, tmp_path)
    if isinstance(got, Raised) and not isinstance(want, Raised):
        raise got.exc  # TF ran it to the end: show varstore's traceback
    if not isinstance(want, dict) or not isinstance(got, dict):
        diffs = compare(want, got, rtol=prog.rtol, atol=prog.atol)
        assert not diffs, "\n".join(diffs) + ("\nTF traceback:\n" + raw.get("traceback", "") if
                                              isinstance(raw, dict) and "traceback" in raw else "")
        return
    kept = {k: (want.pop(k, None), got.pop(k, None)) for k in prog.kept}
    diffs = compare(want, got, rtol=prog.rtol, atol=prog.atol)
    for k, (w, g) in kept.items():
        if not compare(w, g, k, prog.rtol, prog.atol):
            diffs.append(f"{k}: declared a kept difference ({prog.kept[k]!r}) but varstore now agrees with TF "
                         f"({w!r:.120}): drop it from kept= and from docs/coming-from-tf1.md")
    assert not diffs, "\n".join(diffs)


def test_kept_differences_are_documented():
    rows = _kept_rows()
    missing = {f"{p.name}[{k}]": row for p in REGISTRY.values() for k, row in p.kept.items() if row not in rows}
    assert not missing, f"kept differences without a row in {DOC.name}'s 'Kept differences' table: {missing}"


def test_tf_runs_every_program(tf_results):
    assert sorted(tf_results) == sorted(REGISTRY)
