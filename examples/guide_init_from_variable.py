"""The guide's "Initialization from another Variable" block, unchanged after
``import varstore as tf``.

``initialized_value()`` makes w2's and w_twice's initializers run weights'
initializer first (once per run, whatever order the initializers are
listed in), so the random values are drawn once and shared.

Run: python examples/guide_init_from_variable.py
"""
import numpy as np

import varstore as tf

# Create a variable with a random value.
weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35),
                      name="weights")
# Create another variable with the same value as 'weights'.
w2 = tf.Variable(weights.initialized_value(), name="w2")
# Create another variable with twice the value of 'weights'
w_twice = tf.Variable(weights.initialized_value() * 2.0, name="w_twice")

with tf.Session() as sess:
    # Listed dependents first on purpose: weights is still initialized first, and only once.
    sess.run(tf.variables_initializer([w_twice, w2, weights]))
    w, a, b = sess.run([weights, w2, w_twice])
print(f"w2 == weights: {np.array_equal(a, w)}")
print(f"w_twice == 2 * weights: {np.array_equal(b, 2 * w)}")
print(f"weights[0, :3] = {w[0, :3]}, w_twice[0, :3] = {b[0, :3]}")
