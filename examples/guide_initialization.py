"""The guide's "Initialization" block, unchanged after ``import varstore as tf``.

``global_variables_initializer()`` returns an op; running it in a session
initializes every variable that existed when it was created. The guide's
``...`` lines stand for the rest of your program.

Run: python examples/guide_initialization.py
"""
import varstore as tf

# Create two variables.
weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35),
                      name="weights")
biases = tf.Variable(tf.zeros([200]), name="biases")
...
# Add an op to initialize the variables.
init_op = tf.global_variables_initializer()

# Later, when launching the model
with tf.Session() as sess:
  # Run the init operation.
  sess.run(init_op)
  ...
  # Use the model
  ...

# The values live in the variables: closing the session freed nothing.
w, b = weights.numpy(), biases.numpy()
print(f"init_op: {init_op}")
print(f"weights: std {w.std():.4f} mean {w.mean():+.4f} shape {w.shape}")
print(f"biases: all zeros: {not b.any()} shape {b.shape}")
