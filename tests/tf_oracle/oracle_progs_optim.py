"""Group 3: optimizers — apply_gradients built once and run N times, dense and sparse, slots."""
import numpy as np
from oracle_harness import program

W0 = [[1.0, 2.0], [3.0, 4.0]]
B0 = [0.5, -0.5]
GW = [[0.1, -0.2], [0.3, 0.4]]
GB = [1.0, -1.0]


def _train(tf, opt, steps=3, use_global_step=True):
    """The usual loop: variables, constant gradients, one train op, N runs."""
    w = tf.Variable(W0, name="w")
    b = tf.Variable(B0, name="b")
    gs = tf.Variable(0, name="global_step", trainable=False) if use_global_step else None
    train = opt.apply_gradients(zip([tf.constant(GW), tf.constant(GB)], [w, b]), global_step=gs)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(steps):
            sess.run(train)
        out = {"w": sess.run(w), "b": sess.run(b),
               "variables": [v.name for v in tf.global_variables()],
               "trainable": [v.name for v in tf.trainable_variables()]}
        if gs is not None:
            out["global_step"] = sess.run(gs)
        out["slots"] = {n: sess.run(opt.get_slot(w, n)) for n in opt.get_slot_names()}
        out["slot_names"] = sorted(opt.get_slot_names())
        out["slot_var_names"] = {n: opt.get_slot(w, n).name for n in opt.get_slot_names()}
    return out


@program
def gradient_descent(tf):
    return _train(tf, tf.train.GradientDescentOptimizer(0.1))


@program
def momentum(tf):
    return _train(tf, tf.train.MomentumOptimizer(0.1, momentum=0.9))


@program
def momentum_nesterov(tf):
    return _train(tf, tf.train.MomentumOptimizer(0.1, momentum=0.9, use_nesterov=True))


@program
def adam(tf):
    return _train(tf, tf.train.AdamOptimizer(0.01))


@program
def adam_hyperparameters(tf):
    return _train(tf, tf.train.AdamOptimizer(learning_rate=0.1, beta1=0.5, beta2=0.9, epsilon=1e-3), steps=5)


@program
def adagrad(tf):
    return _train(tf, tf.train.AdagradOptimizer(0.1))


@program
def adagrad_initial_accumulator(tf):
    return _train(tf, tf.train.AdagradOptimizer(0.5, initial_accumulator_value=1.0))


@program
def rmsprop(tf):
    return _train(tf, tf.train.RMSPropOptimizer(0.01))


@program
def rmsprop_momentum(tf):
    return _train(tf, tf.train.RMSPropOptimizer(0.01, decay=0.8, momentum=0.5))


@program
def rmsprop_centered(tf):
    return _train(tf, tf.train.RMSPropOptimizer(0.01, momentum=0.9, centered=True), steps=4)


@program
def without_global_step(tf):
    return _train(tf, tf.train.MomentumOptimizer(0.1, 0.5), use_global_step=False)


@program
def optimizer_name(tf):
    return _train(tf, tf.train.AdamOptimizer(0.01, name="MyAdam"), steps=1)


@program
def gradients_fed_by_placeholder(tf):
    w = tf.Variable([1.0, 1.0], name="w")
    g = tf.placeholder(tf.float32, shape=[2])
    gs = tf.train.get_or_create_global_step()
    train = tf.train.AdamOptimizer(0.1).apply_gradients([(g, w)], global_step=gs)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for step in range(4):
            sess.run(train, feed_dict={g: [0.5 * step, -1.0]})
        return {"w": sess.run(w), "gs": sess.run(gs), "gs_name": gs.name,
                "global_step": tf.train.global_step(sess, gs)}


@program
def gradients_as_numpy_arrays(tf):
    w = tf.Variable(np.ones((2, 3), np.float32), name="w")
    grad = np.full((2, 3), 0.25, np.float32)
    train = tf.train.GradientDescentOptimizer(0.5).apply_gradients([(grad, w)])
    with tf.Session() as sess:
        sess.run(w.initializer)
        sess.run(train)
        sess.run(train)
        return {"w": sess.run(w)}


@program
def learning_rate_placeholder(tf):
    w = tf.Variable([1.0], name="w")
    lr = tf.placeholder(tf.float32, shape=[])
    train = tf.train.GradientDescentOptimizer(lr).apply_gradients([(tf.constant([1.0]), w)])
    with tf.Session() as sess:
        sess.run(w.initializer)
        for rate in (0.1, 0.2, 0.3):
            sess.run(train, {lr: rate})
        return {"w": sess.run(w)}


@program
def learning_rate_exponential_decay(tf):
    w = tf.Variable([0.0], name="w")
    gs = tf.Variable(0, trainable=False, name="global_step")
    lr = tf.train.exponential_decay(1.0, gs, decay_steps=2, decay_rate=0.5, staircase=True)
    train = tf.train.GradientDescentOptimizer(lr).apply_gradients([(tf.constant([1.0]), w)], global_step=gs)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        lrs = []
        for _ in range(5):
            lrs.append(sess.run(lr))
            sess.run(train)
        return {"w": sess.run(w), "lrs": lrs}


@program
def get_or_create_global_step(tf):
    gs = tf.train.get_or_create_global_step()
    again = tf.train.get_or_create_global_step()
    return {"name": gs.name, "same": gs is again, "dtype": gs.dtype.base_dtype.name,
            "trainable": [v.name for v in tf.trainable_variables()], "in_global": [v.name for v in tf.global_variables()],
            "get": tf.train.get_global_step().name,
            "collection": [v.name for v in tf.get_collection(tf.GraphKeys.GLOBAL_STEP)]}


@program
def shared_global_step_two_train_ops(tf):
    a = tf.Variable([1.0], name="a")
    b = tf.Variable([1.0], name="b")
    gs = tf.train.get_or_create_global_step()
    opt = tf.train.GradientDescentOptimizer(0.1)
    ta = opt.apply_gradients([(tf.constant([1.0]), a)], global_step=gs)
    tb = opt.apply_gradients([(tf.constant([2.0]), b)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(ta)
        sess.run(tb)
        sess.run([ta, tb])
        return {"a": sess.run(a), "b": sess.run(b), "gs": sess.run(gs)}


@program
def none_gradient_skipped(tf):
    a = tf.Variable([1.0], name="a")
    b = tf.Variable([1.0], name="b")
    train = tf.train.GradientDescentOptimizer(0.5).apply_gradients([(tf.constant([1.0]), a), (None, b)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(train)
        return {"a": sess.run(a), "b": sess.run(b)}


def _sparse(tf, opt, steps=2):
    emb = tf.Variable(np.arange(8, dtype=np.float32).reshape(4, 2), name="emb")
    grad = tf.IndexedSlices(tf.constant([[1.0, -1.0], [0.5, 0.5]]), tf.constant([0, 2]), tf.constant([4, 2]))
    gs = tf.Variable(0, name="global_step", trainable=False)
    train = opt.apply_gradients([(grad, emb)], global_step=gs)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(steps):
            sess.run(train)
        return {"emb": sess.run(emb), "gs": sess.run(gs),
                "slots": {n: sess.run(opt.get_slot(emb, n)) for n in opt.get_slot_names()}}


@program
def sparse_gradient_descent(tf):
    return _sparse(tf, tf.train.GradientDescentOptimizer(0.1))


@program
def sparse_momentum(tf):
    return _sparse(tf, tf.train.MomentumOptimizer(0.1, 0.9), steps=3)


@program
def sparse_adam(tf):
    return _sparse(tf, tf.train.AdamOptimizer(0.1), steps=3)


@program
def sparse_adagrad(tf):
    return _sparse(tf, tf.train.AdagradOptimizer(0.1), steps=3)


@program
def sparse_rmsprop(tf):
    return _sparse(tf, tf.train.RMSPropOptimizer(0.1, momentum=0.5), steps=3)


@program
def sparse_duplicate_indices(tf):
    emb = tf.Variable(np.zeros((3, 2), np.float32), name="emb")
    grad = tf.IndexedSlices(tf.constant([[1.0, 1.0], [2.0, 2.0]]), tf.constant([1, 1]), tf.constant([3, 2]))
    train = tf.train.AdagradOptimizer(0.1).apply_gradients([(grad, emb)])
    with tf.Session() as sess:
        sess.run(emb.initializer)
        sess.run(tf.global_variables_initializer())
        sess.run(train)
        return {"emb": sess.run(emb)}


@program
def adam_variables_and_slots(tf):
    w = tf.Variable([1.0, 2.0], name="w")
    with tf.variable_scope("layer"):
        v = tf.Variable([[1.0]], name="v")
    opt = tf.train.AdamOptimizer(0.1)
    opt.apply_gradients([(tf.constant([1.0, 1.0]), w), (tf.constant([[1.0]]), v)])
    return {"global": sorted(x.name for x in tf.global_variables()),
            "trainable": sorted(x.name for x in tf.trainable_variables()),
            "slot_names": sorted(opt.get_slot_names()),
            "m": opt.get_slot(w, "m").name, "v": opt.get_slot(v, "v").name,
            "slot_shape": opt.get_slot(v, "m").get_shape().as_list(),
            "missing": opt.get_slot(w, "nope"),
            "opt_variables": sorted(x.name for x in opt.variables())}


@program
def slots_initialized_by_global_initializer(tf):
    w = tf.Variable([1.0, 2.0], name="w")
    opt = tf.train.MomentumOptimizer(0.1, 0.9)
    train = opt.apply_gradients([(tf.constant([1.0, 1.0]), w)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        before = sess.run(opt.get_slot(w, "momentum"))
        sess.run(train)
        return {"before": before, "after": sess.run(opt.get_slot(w, "momentum")), "w": sess.run(w)}


@program
def float64_variable(tf):
    w = tf.Variable(np.array([1.0, 2.0]), name="w")
    opt = tf.train.AdamOptimizer(0.1)
    train = opt.apply_gradients([(tf.constant([0.5, -0.5], tf.float64), w)])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            sess.run(train)
        return {"w": sess.run(w), "m": sess.run(opt.get_slot(w, "m"))}


@program
def train_op_returns_none_when_run(tf):
    w = tf.Variable([1.0], name="w")
    gs = tf.Variable(0, name="global_step", trainable=False)
    train = tf.train.GradientDescentOptimizer(0.1).apply_gradients([(tf.constant([1.0]), w)], global_step=gs)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"ret": sess.run(train), "both": sess.run([train, gs])[0]}
