"""The guide's "Creation" block, unchanged after ``import varstore as tf``.

Creating a variable allocates and draws nothing: the initial value is a
description that the variable's initializer evaluates later, on the
variable's device.

Run: python examples/guide_creation.py
"""
import varstore as tf

# Create two variables.
weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35),
                      name="weights")
biases = tf.Variable(tf.zeros([200]), name="biases")

for v in (weights, biases):
    print(f"{v.name}: shape {v.shape} {v.dtype.name} on {v.device}, initialized: {v.is_initialized}")
print("initial values (deferred):", weights.initial_value, biases.initial_value)
print("global variables:", [v.name for v in tf.global_variables()])

with tf.Session() as sess:
    sess.run([weights.initializer, biases.initializer])
    w, b = sess.run([weights, biases])
print(f"after the initializers: weights mean {w.mean():+.4f} std {w.std():.4f}; biases all zeros: {not b.any()}")
