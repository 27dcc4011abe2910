"""Group 1: the guide itself (Variables: Creation, Initialization, Saving, and Loading)."""
import os

import numpy as np
from oracle_harness import program


@program
def creation(tf):
    weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35), name="weights")
    biases = tf.Variable(tf.zeros([200]), name="biases")
    init_op = tf.global_variables_initializer()
    with tf.Session() as sess:
        sess.run(init_op)
        w, b = sess.run(weights), sess.run(biases)
    return {"names": [weights.name, biases.name], "shapes": [list(w.shape), list(b.shape)],
            "dtypes": [str(w.dtype), str(b.dtype)], "biases": b,
            "w_mean_small": bool(abs(w.mean()) < 0.01), "w_std": bool(0.33 < w.std() < 0.37)}


@program
def device_cpu(tf):
    with tf.device("/cpu:0"):
        v = tf.Variable(tf.zeros([3]), name="v")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        val = sess.run(v)
    return {"device": v.device, "value": val}


@program(kept={"device": "`v.device` under `tf.device` for a place this machine lacks"})
def device_gpu_requested(tf):
    with tf.device("/gpu:0"):
        v = tf.Variable(tf.zeros([3]), name="v")
    return {"device": v.device, "name": v.name}


@program(kept={"device": "`v.device` under `tf.device` for a place this machine lacks"})
def device_ps_requested(tf):
    with tf.device("/job:ps/task:0"):
        v = tf.Variable(tf.zeros([3]), name="v")
    return {"device": v.device, "name": v.name}


@program
def initialization(tf):
    weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35), name="weights")
    biases = tf.Variable(tf.zeros([200]), name="biases")
    ones = tf.Variable(tf.ones([2, 3]), name="ones")
    filled = tf.Variable(tf.fill([2], 7), name="filled")
    const = tf.Variable(tf.constant([1.0, 2.0]), name="const")
    init_op = tf.global_variables_initializer()
    with tf.Session() as sess:
        sess.run(init_op)
        return {"biases_sum": sess.run(biases).sum(), "ones": sess.run(ones), "filled": sess.run(filled),
                "const": sess.run(const), "weights_shape": list(sess.run(weights).shape)}


@program
def initialized_value(tf):
    weights = tf.Variable(tf.random_normal([784, 200], stddev=0.35), name="weights")
    w2 = tf.Variable(weights.initialized_value(), name="w2")
    w_twice = tf.Variable(weights.initialized_value() * 2.0, name="w_twice")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        w, a, b = sess.run([weights, w2, w_twice])
    return {"copy": bool(np.array_equal(w, a)), "twice": bool(np.allclose(2 * w, b)), "names": [w2.name, w_twice.name]}


@program
def initialized_value_only_other_initializer(tf):
    a = tf.Variable(tf.constant([1.0, 2.0]), name="a")
    b = tf.Variable(a.initialized_value() + 1.0, name="b")
    with tf.Session() as sess:
        sess.run(b.initializer)  # runs a's initial value, not a's initializer
        return {"b": sess.run(b), "a_initialized": bool(sess.run(tf.is_variable_initialized(a)))}


@program
def save(tf, tmp):
    tf.Variable(tf.constant([1.0, 2.0]), name="v1")
    tf.Variable(tf.constant([[3, 4]]), name="v2")
    init_op = tf.global_variables_initializer()
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(init_op)
        save_path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    return {"path": os.path.relpath(save_path, tmp),
            "latest": os.path.relpath(tf.train.latest_checkpoint(tmp), tmp),
            "keys": sorted(tf.train.list_variables(save_path)), "meta": os.path.exists(save_path + ".meta")}


@program
def restore(tf, tmp):
    v1 = tf.Variable(tf.constant([1.0, 2.0]), name="v1")
    v2 = tf.Variable(tf.constant([[3, 4]]), name="v2")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(v1.assign([5.0, 6.0]))
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    tf.reset_default_graph()
    v1 = tf.Variable(tf.zeros([2]), name="v1")
    v2 = tf.Variable(tf.zeros([1, 2], tf.int32), name="v2")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        saver.restore(sess, path)  # no initializer needed
        return {"v1": sess.run(v1), "v2": sess.run(v2)}


@program
def choosing_variables_dict(tf, tmp):
    tf.Variable(tf.constant([1.0, 2.0]), name="v1")
    v2 = tf.Variable(tf.constant([3.0]), name="v2")
    saver = tf.train.Saver({"my_v2": v2})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    tf.reset_default_graph()
    other = tf.Variable(tf.zeros([1]), name="other")
    tf.Variable(tf.zeros([2]), name="v1")
    saver = tf.train.Saver({"my_v2": other})
    with tf.Session() as sess:
        saver.restore(sess, path)
        return {"keys": sorted(tf.train.list_variables(path)), "other": sess.run(other),
                "uninit": sess.run(tf.report_uninitialized_variables())}


@program
def choosing_variables_list(tf, tmp):
    v1 = tf.Variable(tf.constant([1.0, 2.0]), name="v1")
    v2 = tf.Variable(tf.constant([3.0]), name="v2")
    saver = tf.train.Saver([v1])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    return {"keys": [k for k, _ in tf.train.list_variables(path)], "v2": v2.name}


@program
def global_step_naming(tf, tmp):
    v = tf.Variable(tf.zeros([2]), name="v")
    step = tf.Variable(7, name="global_step", trainable=False)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        p1 = saver.save(sess, os.path.join(tmp, "my-model"), global_step=1000)
        p2 = saver.save(sess, os.path.join(tmp, "my-model"), global_step=step)
    return {"p1": os.path.basename(p1), "p2": os.path.basename(p2), "v": v.name,
            "latest": os.path.basename(tf.train.latest_checkpoint(tmp))}


@program
def global_variables_lists(tf):
    a = tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b", trainable=False)
    with tf.name_scope("layer"):
        c = tf.Variable([3.0], name="c")
    return {"global": [v.name for v in tf.global_variables()], "trainable": [v.name for v in tf.trainable_variables()],
            "a": a.op.name, "b": b.op.name, "c": c.op.name}


@program
def variables_initializer_subset(tf):
    a = tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b")
    with tf.Session() as sess:
        sess.run(tf.variables_initializer([a]))
        return {"a": sess.run(a), "init": sess.run([tf.is_variable_initialized(a), tf.is_variable_initialized(b)]),
                "uninit": sess.run(tf.report_uninitialized_variables())}


@program
def initializer_reruns(tf):
    v = tf.Variable(tf.constant([1.0, 2.0]), name="v")
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(v.assign([9.0, 9.0]))
        before = sess.run(v)
        sess.run(tf.global_variables_initializer())
        return {"before": before, "after": sess.run(v)}


@program
def python_value_dtypes(tf):
    vs = [tf.Variable(1, name="i"), tf.Variable(1.5, name="f"), tf.Variable(np.float64(2.0), name="d"),
          tf.Variable(np.arange(3, dtype=np.int64), name="l"), tf.Variable([True, False], name="bo"),
          tf.Variable([1.0, 2.0], dtype=tf.float64, name="cast")]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {v.op.name: sess.run(v) for v in vs}


@program
def random_initializers_stats(tf):
    tf.set_random_seed(1234)
    n = tf.Variable(tf.random_normal([200, 100], mean=1.0, stddev=2.0), name="n")
    t = tf.Variable(tf.truncated_normal([200, 100], stddev=1.0), name="t")
    u = tf.Variable(tf.random_uniform([200, 100], minval=-1, maxval=3), name="u")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        n, t, u = sess.run([n, t, u])
    return {"n_mean": bool(abs(n.mean() - 1) < 0.1), "n_std": bool(abs(n.std() - 2) < 0.05),
            "t_bound": bool(np.abs(t).max() <= 2.0), "u_range": bool(u.min() >= -1 and u.max() < 3),
            "u_mean": bool(abs(u.mean() - 1) < 0.05), "dtypes": [str(n.dtype), str(t.dtype), str(u.dtype)]}
