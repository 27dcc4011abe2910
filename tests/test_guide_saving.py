"""The guide's second half (Saving Variables, Restoring Variables, Choosing which Variables
to Save and Restore) runs unchanged after ``import varstore as tf``.

The blocks are the guide's text. Only two things are filled in: the guide's ``...`` (minimal
initial values, as the guide leaves them to the reader) and the directory of "/tmp/model.ckpt",
which becomes the test's own temporary directory so parallel runs cannot collide.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import varstore as tf

SAVE_BLOCK = '''
# Create some variables.
v1 = tf.Variable(tf.random_normal([3, 4]), name="v1")
v2 = tf.Variable(tf.zeros([5]), name="v2")
# Add an op to initialize the variables.
init_op = tf.global_variables_initializer()

# Add ops to save and restore all the variables.
saver = tf.train.Saver()

# Later, launch the model, initialize the variables, do some work, save the
# variables to disk.
with tf.Session() as sess:
  sess.run(init_op)
  # Do some work with the model.
  sess.run(v2.assign_add([1.0, 2.0, 3.0, 4.0, 5.0]))
  # Save the variables to disk.
  save_path = saver.save(sess, "/tmp/model.ckpt")
  print("Model saved in file: %s" % save_path)
'''

RESTORE_BLOCK = '''
# Create some variables.
v1 = tf.Variable(tf.random_normal([3, 4]), name="v1")
v2 = tf.Variable(tf.zeros([5]), name="v2")
# Add ops to save and restore all the variables.
saver = tf.train.Saver()

# Later, launch the model, use the saver to restore variables from disk, and
# do some work with the model.
with tf.Session() as sess:
  # Restore variables from disk.
  saver.restore(sess, "/tmp/model.ckpt")
  print("Model restored.")
  # Do some work with the model
  restored = sess.run([v1, v2])
'''

CHOOSE_BLOCK = '''
# Create some variables.
v1 = tf.Variable(tf.random_normal([3, 4]), name="v1")
v2 = tf.Variable(tf.zeros([5]), name="v2")
# Add ops to save and restore only 'v2' using the name "my_v2"
saver = tf.train.Saver({"my_v2": v2})
# Use the saver object normally after that.
with tf.Session() as sess:
  sess.run(tf.global_variables_initializer())
  saved_to = saver.save(sess, "/tmp/model.ckpt")
'''


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()
    yield
    tf.reset_default_graph()


def run_block(block: str, tmp_path) -> dict:
    code = textwrap.dedent(block).replace('"/tmp/model.ckpt"', repr(str(tmp_path / "model.ckpt")))
    scope = {"tf": tf}
    exec(compile(code, "<guide>", "exec"), scope)
    return scope


def test_save_then_restore_as_in_the_guide(tmp_path, capsys):
    saved = run_block(SAVE_BLOCK, tmp_path)
    assert capsys.readouterr().out.strip() == f"Model saved in file: {tmp_path / 'model.ckpt'}"
    v1_saved, v2_saved = saved["v1"].numpy(), saved["v2"].numpy()
    np.testing.assert_array_equal(v2_saved, [1, 2, 3, 4, 5])  # the block's assign_add ran before the save
    assert (tmp_path / "model.ckpt").is_file() and (tmp_path / "model.ckpt.meta").is_file()
    assert (tmp_path / "checkpoint").is_file()

    tf.reset_default_graph()
    restored = run_block(RESTORE_BLOCK, tmp_path)
    assert "Model restored." in capsys.readouterr().out
    r1, r2 = restored["restored"]
    np.testing.assert_array_equal(r1, v1_saved)  # the random draw came back, not a new one
    np.testing.assert_array_equal(r2, v2_saved)


def test_restore_needs_no_initializer(tmp_path):
    run_block(SAVE_BLOCK, tmp_path)
    tf.reset_default_graph()
    scope = run_block(RESTORE_BLOCK, tmp_path)
    assert scope["v1"].is_initialized and scope["v2"].is_initialized
    assert tf.Session().run(tf.report_uninitialized_variables()).tolist() == []


def test_choosing_variables_saves_only_my_v2(tmp_path):
    scope = run_block(CHOOSE_BLOCK, tmp_path)
    assert tf.train.list_variables(scope["saved_to"]) == [("my_v2", [5])]
    np.testing.assert_array_equal(tf.train.load_variable(scope["saved_to"], "my_v2"), np.zeros(5))


def test_my_v2_restores_into_a_differently_named_variable(tmp_path):
    scope = run_block(CHOOSE_BLOCK, tmp_path)
    with tf.Session() as sess:
        sess.run(scope["v2"].assign([9.0, 8.0, 7.0, 6.0, 5.0]))
        path = tf.train.Saver({"my_v2": scope["v2"]}).save(sess, str(tmp_path / "m2.ckpt"))
    tf.reset_default_graph()
    params = tf.Variable(tf.zeros([5]), name="params")
    tf.train.Saver({"my_v2": params}).restore(None, path)
    np.testing.assert_array_equal(params.numpy(), [9, 8, 7, 6, 5])


def test_partial_restore_leaves_the_rest_for_variables_initializer(tmp_path):
    run_block(CHOOSE_BLOCK, tmp_path)
    tf.reset_default_graph()
    v1 = tf.Variable(tf.ones([3, 4]), name="v1")
    v2 = tf.Variable(tf.ones([5]), name="v2")
    tf.train.Saver({"my_v2": v2}).restore(None, str(tmp_path / "model.ckpt"))
    assert tf.Session().run(tf.report_uninitialized_variables()).tolist() == [b"v1"]
    tf.variables_initializer([v1]).run()
    np.testing.assert_array_equal(v2.numpy(), np.zeros(5))
    np.testing.assert_array_equal(v1.numpy(), np.ones((3, 4)))


def test_inspect_checkpoint_prints_the_saved_tensors(tmp_path, capsys):
    from varstore.tools.inspect_checkpoint import print_tensors_in_checkpoint_file
    run_block(SAVE_BLOCK, tmp_path)
    capsys.readouterr()
    print_tensors_in_checkpoint_file(str(tmp_path / "model.ckpt"), tensor_name="", all_tensors=False)
    assert capsys.readouterr().out.splitlines() == ["v1 (DT_FLOAT) [3, 4]", "v2 (DT_FLOAT) [5]"]
    print_tensors_in_checkpoint_file(str(tmp_path / "model.ckpt"), tensor_name="v2", all_tensors=False)
    out = capsys.readouterr().out
    assert out.startswith("tensor_name:  v2\n") and "[1. 2. 3. 4. 5.]" in out
    print_tensors_in_checkpoint_file(str(tmp_path / "model.ckpt"), tensor_name="", all_tensors=False,
                                     all_tensor_names=True)
    assert capsys.readouterr().out.splitlines() == ["tensor_name:  v1", "tensor_name:  v2"]
