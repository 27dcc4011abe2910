"""Group 4: the Variable API, get_variable / variable_scope, partitioned variables."""
import os

import numpy as np
from oracle_harness import program, raises


@program
def names(tf):
    a = tf.Variable(1.0, name="v")
    b = tf.Variable(1.0, name="v")
    with tf.name_scope("scope"):
        c = tf.Variable(1.0, name="v")
        d = tf.Variable(1.0)
    with tf.name_scope("scope"):
        e = tf.Variable(1.0, name="v")
    f = tf.Variable(1.0, name="a/b")
    return {"name": [x.name for x in (a, b, c, d, e, f)], "op": [x.op.name for x in (a, b, c, d, e, f)]}


@program
def attributes(tf):
    v = tf.Variable(tf.zeros([3, 4]), name="v")
    return {"shape": v.get_shape().as_list(), "shape2": v.shape.as_list(), "ndims": v.shape.ndims,
            "dim0": int(v.shape[0]), "graph_is_default": v.graph is tf.get_default_graph(),
            "base_dtype": v.dtype.base_dtype.name, "as_numpy": np.dtype(v.dtype.as_numpy_dtype).name,
            "is_floating": v.dtype.is_floating, "size": v.dtype.size, "trainable": v.trainable,
            "base_eq": tf.float32 == v.dtype.base_dtype, "int_ne": tf.int32 != v.dtype.base_dtype}


@program(kept={"dtype_name": "`v.dtype` of a `tf.Variable` in graph mode", "eq": "`v.dtype` of a `tf.Variable` in graph mode"})
def dtype_name_and_equality(tf):
    v = tf.Variable(tf.zeros([2]), name="v")
    return {"dtype_name": v.dtype.name, "eq": tf.float32 == v.dtype, "value_dtype": v.value().dtype.name}


@program
def initializer_and_initial_value(tf):
    v = tf.Variable(tf.constant([1.0, 2.0]) * 3.0, name="v")
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(v.assign([0.0, 0.0]))
        return {"initial": sess.run(v.initial_value), "v": sess.run(v), "read": sess.run(v.read_value()),
                "initializer_name": v.initializer.name}


@program
def trainable_and_collections(tf):
    a = tf.Variable(1.0, name="a", trainable=False)
    b = tf.Variable(1.0, name="b", collections=[tf.GraphKeys.LOCAL_VARIABLES])
    c = tf.Variable(1.0, name="c", collections=["mine", tf.GraphKeys.GLOBAL_VARIABLES])
    tf.add_to_collection("mine", a)
    return {"global": [v.name for v in tf.global_variables()], "local": [v.name for v in tf.local_variables()],
            "trainable": [v.name for v in tf.trainable_variables()],
            "mine": [v.name for v in tf.get_collection("mine")], "flags": [a.trainable, b.trainable, c.trainable]}


@program
def local_variables_initializer(tf):
    v = tf.Variable(5, name="count", collections=[tf.GraphKeys.LOCAL_VARIABLES])
    with tf.Session() as sess:
        sess.run(tf.local_variables_initializer())
        return {"v": sess.run(v)}


@program
def get_variable_basic(tf):
    v = tf.get_variable("v", shape=[2, 3], initializer=tf.zeros_initializer())
    c = tf.get_variable("c", [2], initializer=tf.constant_initializer(1.5))
    o = tf.get_variable("o", [3], dtype=tf.float64, initializer=tf.ones_initializer())
    i = tf.get_variable("i", [2], dtype=tf.int32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"names": [x.name for x in (v, c, o, i)], "v": sess.run(v), "c": sess.run(c), "o": sess.run(o),
                "i": sess.run(i)}


@program
def get_variable_default_glorot(tf):
    v = tf.get_variable("w", shape=[30, 50])
    with tf.Session() as sess:
        sess.run(v.initializer)
        w = sess.run(v)
    limit = np.sqrt(6.0 / (30 + 50))
    return {"shape": list(w.shape), "dtype": str(w.dtype), "in_range": bool(np.abs(w).max() <= limit),
            "spread": bool(np.abs(w).max() > 0.8 * limit), "mean_small": bool(abs(w.mean()) < 0.02)}


@program
def get_variable_initializer_value(tf):
    v = tf.get_variable("v", initializer=tf.constant([[1.0, 2.0]]))
    n = tf.get_variable("n", initializer=np.array([3, 4], np.int64))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"v": sess.run(v), "n": sess.run(n), "shape": v.get_shape().as_list()}


@program
def get_variable_initializer_stats(tf):
    n = tf.get_variable("n", [100, 100], initializer=tf.random_normal_initializer(mean=0.5, stddev=0.1))
    u = tf.get_variable("u", [100, 100], initializer=tf.random_uniform_initializer(-2.0, 2.0))
    t = tf.get_variable("t", [100, 100], initializer=tf.truncated_normal_initializer(stddev=1.0))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        n, u, t = sess.run([n, u, t])
    return {"n": bool(abs(n.mean() - 0.5) < 0.01 and abs(n.std() - 0.1) < 0.01),
            "u": bool(u.min() >= -2 and u.max() < 2 and abs(u.mean()) < 0.15),
            "t": bool(np.abs(t).max() <= 2.0)}


@program
def variable_scope_naming(tf):
    with tf.variable_scope("foo"):
        with tf.variable_scope("bar"):
            v = tf.get_variable("v", [1])
        w = tf.Variable(1.0, name="w")
        scope_name = tf.get_variable_scope().name
    return {"v": v.name, "w": w.name, "scope": scope_name, "outer": tf.get_variable_scope().name}


@program
def name_scope_vs_variable_scope(tf):
    with tf.variable_scope("vs"), tf.name_scope("ns"):
        v = tf.get_variable("v", [1])
        w = tf.Variable(1.0, name="w")
        x = tf.add(v, 1.0, name="x")
    return {"v": v.name, "w": w.name, "x": x.name}


@program
def variable_scope_reuse_true(tf):
    with tf.variable_scope("foo"):
        v = tf.get_variable("v", [1], initializer=tf.constant_initializer(2.0))
    with tf.variable_scope("foo", reuse=True):
        v1 = tf.get_variable("v", [1])
    with tf.variable_scope("foo") as scope:
        scope.reuse_variables()
        v2 = tf.get_variable("v")
    return {"same": v1 is v and v2 is v, "count": len(tf.global_variables()), "name": v1.name}


@program
def variable_scope_auto_reuse(tf):
    def dense(x):
        with tf.variable_scope("dense", reuse=tf.AUTO_REUSE):
            w = tf.get_variable("w", [2, 2], initializer=tf.ones_initializer())
        return tf.matmul(x, w), w
    y1, w1 = dense(tf.constant([[1.0, 2.0]]))
    y2, w2 = dense(tf.constant([[3.0, 4.0]]))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"same": w1 is w2, "names": [v.name for v in tf.global_variables()], "y": sess.run([y1, y2])}


@program
def reuse_variables_on_current_scope(tf):
    with tf.variable_scope("model"):
        a = tf.get_variable("a", [2])
        tf.get_variable_scope().reuse_variables()
        b = tf.get_variable("a", [2])
        reuse = tf.get_variable_scope().reuse
    return {"same": a is b, "reuse": reuse}


@program
def variable_scope_object_reentered(tf):
    with tf.variable_scope("s") as scope:
        a = tf.get_variable("a", [1])
    with tf.variable_scope(scope, reuse=True):
        b = tf.get_variable("a", [1])
    with tf.variable_scope(scope):
        c = tf.get_variable("c", [1])
        w = tf.Variable(1.0, name="w")
    return {"same": a is b, "c": c.name, "w": w.name, "scope_name": scope.name}


@program
def variable_scope_default_name(tf):
    names = []
    for _ in range(2):
        with tf.variable_scope(None, default_name="layer"):
            names.append(tf.get_variable("w", [1]).name)
    return {"names": names}


@program
def variable_scope_initializer_and_dtype(tf):
    with tf.variable_scope("s", initializer=tf.constant_initializer(0.4)):
        a = tf.get_variable("a", [2])
        b = tf.get_variable("b", [2], initializer=tf.constant_initializer(0.3))
        with tf.variable_scope("inner"):
            c = tf.get_variable("c", [1])
    with tf.variable_scope("d", dtype=tf.float64):
        d = tf.get_variable("d", [1], initializer=tf.zeros_initializer())
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"a": sess.run(a), "b": sess.run(b), "c": sess.run(c), "d": sess.run(d)}


@program
def get_variable_duplicate_is_error(tf):
    with tf.variable_scope("s"):
        tf.get_variable("v", [1])
        return {"err": raises(lambda: tf.get_variable("v", [1])), "count": len(tf.global_variables())}


@program
def get_variable_missing_with_reuse_is_error(tf):
    with tf.variable_scope("s", reuse=True):
        return {"err": raises(lambda: tf.get_variable("nope", [1]))}


@program
def get_variable_shape_mismatch_on_reuse(tf):
    with tf.variable_scope("s"):
        tf.get_variable("v", [2])
    with tf.variable_scope("s", reuse=True):
        return {"err": raises(lambda: tf.get_variable("v", [3]))}


@program
def get_variable_trainable_and_collections(tf):
    a = tf.get_variable("a", [1], trainable=False)
    b = tf.get_variable("b", [1], collections=[tf.GraphKeys.LOCAL_VARIABLES])
    return {"trainable": [v.name for v in tf.trainable_variables()],
            "global": [v.name for v in tf.global_variables()], "local": [v.name for v in tf.local_variables()],
            "a": a.name, "b": b.name}


@program
def get_variable_in_device_scope(tf):
    with tf.device("/cpu:0"):
        v = tf.get_variable("v", [2])
    return {"device": v.device, "name": v.name}


def _partitioned(tf, partitioner, shape=(10, 4)):
    pv = tf.get_variable("pv", shape=list(shape), partitioner=partitioner, initializer=tf.ones_initializer())
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        parts = sess.run(list(pv))
        full = sess.run(tf.concat(list(pv), axis=0))
    return {"n": len(list(pv)), "names": [p.name for p in pv], "part_shapes": [list(p.shape) for p in parts],
            "shape": pv.get_shape().as_list(), "full": full,
            "global": [v.name for v in tf.global_variables()]}


@program
def partitioned_fixed_size(tf):
    return _partitioned(tf, tf.fixed_size_partitioner(3))


@program
def partitioned_min_max(tf):
    return _partitioned(tf, tf.min_max_variable_partitioner(max_partitions=4, min_slice_size=32), shape=(16, 4))


@program
def partitioned_axis_size(tf):
    return _partitioned(tf, tf.variable_axis_size_partitioner(max_shard_bytes=64), shape=(10, 4))


@program
def partitioned_checkpoint_keys_and_repartition(tf, tmp):
    with tf.variable_scope("emb"):
        pv = tf.get_variable("table", [6, 2], partitioner=tf.fixed_size_partitioner(3),
                             initializer=tf.zeros_initializer())
    parts = list(pv)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for i, p in enumerate(parts):
            sess.run(p.assign(np.full(p.get_shape().as_list(), float(i + 1), np.float32)))
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    keys = tf.train.list_variables(path)
    full = tf.train.load_variable(path, "emb/table")
    tf.reset_default_graph()
    with tf.variable_scope("emb"):
        pv2 = tf.get_variable("table", [6, 2], partitioner=tf.fixed_size_partitioner(2))
    saver = tf.train.Saver()
    with tf.Session() as sess:
        saver.restore(sess, path)
        return {"keys": keys, "full": full, "restored": sess.run(list(pv2))}


@program
def variable_from_numpy_and_lists(tf):
    a = tf.Variable(np.arange(6, dtype=np.int16).reshape(2, 3), name="a")
    b = tf.Variable([[1, 2], [3, 4]], dtype=tf.int64, name="b")
    c = tf.Variable(np.float32(3.5), name="c")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"a": sess.run(a), "b": sess.run(b), "c": sess.run(c),
                "dtypes": [x.dtype.base_dtype.name for x in (a, b, c)], "c_shape": c.get_shape().as_list()}


@program
def is_variable_initialized(tf):
    v = tf.Variable(1.0, name="v")
    with tf.Session() as sess:
        before = sess.run(tf.is_variable_initialized(v))
        sess.run(v.initializer)
        return {"before": before, "after": sess.run(tf.is_variable_initialized(v)),
                "report": sess.run(tf.report_uninitialized_variables())}


@program
def report_uninitialized_names(tf):
    tf.Variable(1.0, name="a")
    with tf.name_scope("s"):
        b = tf.Variable(1.0, name="b")
    tf.Variable(1.0, name="c")
    with tf.Session() as sess:
        sess.run(b.initializer)
        return {"report": sess.run(tf.report_uninitialized_variables())}


@program
def graph_as_default_isolation(tf):
    g = tf.Graph()
    with g.as_default():
        v = tf.Variable(1.0, name="v")
        inner = [x.name for x in tf.global_variables()]
    outer = [x.name for x in tf.global_variables()]
    with tf.Session(graph=g) as sess:
        sess.run(v.initializer)
        val = sess.run(v)
    return {"inner": inner, "outer": outer, "graph": v.graph is g, "v": val}


@program
def get_collection_scope_filter(tf):
    with tf.variable_scope("enc"):
        tf.get_variable("w", [1])
    with tf.variable_scope("dec"):
        tf.get_variable("w", [1])
    return {"enc": [v.name for v in tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope="enc")],
            "trainable_dec": [v.name for v in tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope="dec")],
            "global_scope": [v.name for v in tf.global_variables(scope="dec")]}


@program
def tensor_names_and_shapes(tf):
    v = tf.Variable(tf.zeros([2, 3]), name="v")
    t = tf.identity(v, name="t")
    s = tf.reduce_sum(v, axis=1)
    return {"t": t.name, "t_op": t.op.name, "t_shape": t.get_shape().as_list(), "s_shape": s.shape.as_list(),
            "t_dtype": t.dtype.name, "graph": t.graph is tf.get_default_graph()}
