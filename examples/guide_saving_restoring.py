"""The guide's "Saving Variables", "Restoring Variables" and "Choosing which Variables to Save
and Restore" blocks, unchanged after ``import varstore as tf`` (``...`` filled in minimally).

The guide writes to /tmp/model.ckpt; so does this example (pass a directory to use another).

Run: python examples/guide_saving_restoring.py [DIR]
"""
import os
import sys

import varstore as tf

directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
ckpt = os.path.join(directory, "model.ckpt")

# --- Saving Variables -------------------------------------------------------------
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
  save_path = saver.save(sess, ckpt)
  print("Model saved in file: %s" % save_path)  # noqa: UP031 - the guide's text, unchanged
saved_v1 = v1.numpy()

# --- Restoring Variables ---------------------------------------------------------------
tf.reset_default_graph()
# Create some variables.
v1 = tf.Variable(tf.random_normal([3, 4]), name="v1")
v2 = tf.Variable(tf.zeros([5]), name="v2")
# Add ops to save and restore all the variables.
saver = tf.train.Saver()

# Later, launch the model, use the saver to restore variables from disk, and
# do some work with the model.
with tf.Session() as sess:
  # Restore variables from disk.
  saver.restore(sess, ckpt)
  print("Model restored.")
  # Do some work with the model
  print("v1 is the saved draw:", bool((sess.run(v1) == saved_v1).all()), "| v2 =", sess.run(v2))

# --- Choosing which Variables to Save and Restore ----------------------------------------
tf.reset_default_graph()
# Create some variables.
v1 = tf.Variable(tf.random_normal([3, 4]), name="v1")
v2 = tf.Variable(tf.zeros([5]), name="v2")
# Add ops to save and restore only 'v2' using the name "my_v2"
saver = tf.train.Saver({"my_v2": v2})
# Use the saver object normally after that.
with tf.Session() as sess:
  # Restore only v2 (saved as "v2" above, so this saver reads it from a file it wrote itself).
  sess.run(tf.global_variables_initializer())
  path = saver.save(sess, ckpt.replace("model.ckpt", "model_v2.ckpt"))
  print("saved only:", tf.train.list_variables(path))
  sess.run(v2.assign([0.0] * 5))
  saver.restore(sess, path)
  print("v2 restored under the name my_v2:", sess.run(v2))

# Inspect what the first checkpoint holds, as the guide's "Checkpoint Files" section suggests.
from varstore.tools.inspect_checkpoint import print_tensors_in_checkpoint_file  # noqa: E402

print_tensors_in_checkpoint_file(save_path, tensor_name="", all_tensors=False)
