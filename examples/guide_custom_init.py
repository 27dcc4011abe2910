"""The guide's "Custom Initialization" section (prose, no code block): initialize
an explicit list of variables with ``tf.variables_initializer``, and check
which variables are initialized.

Run: python examples/guide_custom_init.py
"""
import varstore as tf

# Create two variables (the guide's Creation block).
weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35),
                      name="weights")
biases = tf.Variable(tf.zeros([200]), name="biases")

# Fetches evaluated when run, not when created.
weights_ready = tf.is_variable_initialized(weights)
uninitialized = tf.report_uninitialized_variables()

with tf.Session() as sess:
    print(f"uninitialized: {sess.run(uninitialized)}")
    sess.run(tf.variables_initializer([biases]))  # an explicit list
    print(f"after variables_initializer([biases]): uninitialized: {sess.run(uninitialized)}")
    print(f"weights initialized: {sess.run(weights_ready)}")
    try:
        sess.run(weights)
    except tf.errors.FailedPreconditionError as e:
        print(f"reading weights now: FailedPreconditionError: {e}")
    sess.run(tf.variables_initializer([weights]))
    print(f"weights initialized: {sess.run(weights_ready)}")
    print(f"uninitialized: {sess.run(uninitialized)}")
