"""The guide's "Device placement" block, unchanged after ``import varstore as tf``
(its ``tf.Variable(...)`` filled in with ``tf.zeros([3])``).

On a machine without a GPU or a parameter-server cluster, "/gpu:0" and
"/job:ps/task:7" are placed on the CPU (soft placement) with one
PlacementWarning each; ``requested_device`` keeps what was asked for.
Ops that change a variable run on its device whatever scope surrounds them.

Run: python examples/guide_device_placement.py
"""
import varstore as tf

# Pin a variable to CPU.
with tf.device("/cpu:0"):
  v = tf.Variable(tf.zeros([3]))

# Pin a variable to GPU.
with tf.device("/gpu:0"):
  v = tf.Variable(tf.zeros([3]))

# Pin a variable to a particular parameter server task.
with tf.device("/job:ps/task:7"):
  v = tf.Variable(tf.zeros([3]))

for var in tf.global_variables():
    print(f"{var.name}: requested {var.requested_device} -> {var.device}")

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    # The NOTE: an assign created under another device scope still runs on the variable's device.
    with tf.device("/cpu:0"):
        sess.run(v.assign([1.0, 2.0, 3.0]))
    print(f"{v.name} after assign under /cpu:0: {sess.run(v).tolist()} still on {v.device}"
          f" (requested {v.requested_device})")
