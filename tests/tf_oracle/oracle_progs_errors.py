"""Group 6: the errors TF 1.x users catch (each program records the class of what was raised)."""
import os

import numpy as np
from oracle_harness import program, raises


def _saved(tf, tmp, **values):
    for name, val in values.items():
        tf.Variable(val, name=name)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    tf.reset_default_graph()
    return path


@program
def restore_from_not_a_checkpoint(tf, tmp):
    tf.Variable(1.0, name="v")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        return {"missing": raises(lambda: saver.restore(sess, os.path.join(tmp, "no_such.ckpt"))),
                "none": raises(lambda: saver.restore(sess, None))}


@program
def saver_with_no_variables(tf):
    return {"err": raises(lambda: tf.train.Saver())}


@program
def saver_duplicate_names_in_var_list(tf):
    v = tf.Variable(1.0, name="v")
    return {"err": raises(lambda: tf.train.Saver([v, v]))}


@program
def restore_missing_key(tf, tmp):
    path = _saved(tf, tmp, a=np.float32(1.0))
    tf.Variable(1.0, name="a")
    tf.Variable(2.0, name="b")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        return {"err": raises(lambda: saver.restore(sess, path))}


@program
def restore_shape_mismatch(tf, tmp):
    path = _saved(tf, tmp, a=np.zeros(3, np.float32))
    tf.Variable(np.zeros(4, np.float32), name="a")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        return {"err": raises(lambda: saver.restore(sess, path))}


@program
def restore_dtype_mismatch(tf, tmp):
    path = _saved(tf, tmp, a=np.zeros(3, np.float32))
    tf.Variable(np.zeros(3, np.int32), name="a")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        return {"err": raises(lambda: saver.restore(sess, path))}


@program
def read_uninitialized_variable(tf):
    v = tf.Variable(1.0, name="v")
    w = v * 2.0
    with tf.Session() as sess:
        return {"read": raises(lambda: sess.run(v)), "expr": raises(lambda: sess.run(w)),
                "assign_add": raises(lambda: sess.run(v.assign_add(1.0)))}


@program
def uninitialized_after_partial_init(tf):
    a = tf.Variable(1.0, name="a")
    b = tf.Variable(2.0, name="b")
    with tf.Session() as sess:
        sess.run(a.initializer)
        return {"a": sess.run(a), "sum": raises(lambda: sess.run(a + b))}


@program
def feed_wrong_shape(tf):
    x = tf.placeholder(tf.float32, shape=[None, 3])
    y = x + 1.0
    with tf.Session() as sess:
        return {"cols": raises(lambda: sess.run(y, {x: np.ones((2, 2))})),
                "rank": raises(lambda: sess.run(y, {x: np.ones(3)}))}


@program
def feed_not_fed_placeholder(tf):
    x = tf.placeholder(tf.float32, shape=[2], name="x")
    y = tf.placeholder(tf.float32, shape=[2], name="y")
    z = x + y
    with tf.Session() as sess:
        return {"err": raises(lambda: sess.run(z, {x: [1.0, 2.0]})), "ok": sess.run(z, {x: [1.0, 2.0], y: [1.0, 1.0]})}


@program
def assign_wrong_shape(tf):
    v = tf.Variable([1.0, 2.0], name="v")
    return {"err": raises(lambda: v.assign([1.0, 2.0, 3.0])), "tf_assign": raises(lambda: tf.assign(v, [[1.0]]))}


@program
def dtype_mismatch_in_add(tf):
    a = tf.Variable([1.0], name="a")
    b = tf.Variable([1], name="b")
    return {"err": raises(lambda: a + b), "assign": raises(lambda: a.assign(b))}


@program
def closed_session_run(tf):
    v = tf.Variable(1.0, name="v")
    sess = tf.Session()
    sess.close()
    return {"err": raises(lambda: sess.run(v.initializer))}


@program
def fetch_from_another_graph(tf):
    tf.Variable(1.0, name="here")
    g = tf.Graph()
    with g.as_default():
        v = tf.Variable(1.0, name="v")
    with tf.Session() as sess:
        return {"err": raises(lambda: sess.run(v.initializer))}


@program
def fetch_none(tf):
    tf.Variable(1.0, name="v")
    with tf.Session() as sess:
        return {"err": raises(lambda: sess.run(None))}


@program
def apply_gradients_all_none(tf):
    v = tf.Variable([1.0], name="v")
    opt = tf.train.GradientDescentOptimizer(0.1)
    return {"err": raises(lambda: opt.apply_gradients([(None, v)]))}


@program
def apply_gradients_shape_mismatch(tf):
    v = tf.Variable([1.0, 2.0], name="v")
    opt = tf.train.GradientDescentOptimizer(0.1)
    return {"err": raises(lambda: opt.apply_gradients([(tf.constant([1.0, 2.0, 3.0]), v)]))}


@program
def load_variable_missing_name(tf, tmp):
    path = _saved(tf, tmp, a=np.float32(1.0))
    return {"err": raises(lambda: tf.train.load_variable(path, "nope")),
            "list_missing": raises(lambda: tf.train.list_variables(os.path.join(tmp, "nothing")))}


@program
def import_meta_graph_missing_file(tf, tmp):
    return {"err": raises(lambda: tf.train.import_meta_graph(os.path.join(tmp, "nope.meta")))}


@program
def variable_without_initial_value(tf):
    return {"err": raises(lambda: tf.Variable(name="v"))}


@program
def get_variable_without_shape(tf):
    return {"err": raises(lambda: tf.get_variable("v"))}


@program
def scatter_index_out_of_range(tf):
    v = tf.Variable([1.0, 2.0], name="v")
    up = tf.scatter_update(v, [5], [1.0])
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"err": raises(lambda: sess.run(up)), "v": sess.run(v)}


@program
def feed_a_string_to_float(tf):
    x = tf.placeholder(tf.float32, [])
    with tf.Session() as sess:
        return {"err": raises(lambda: sess.run(x * 2.0, {x: "abc"}))}


@program
def int_variable_times_float(tf):
    v = tf.Variable([1, 2], name="v")
    return {"err": raises(lambda: v * 2.5)}


@program
def uninitialized_variable_names_in_error(tf):
    v = tf.Variable(1.0, name="my_weights")
    with tf.Session() as sess:
        e = raises(lambda: sess.run(v))
    return {"named": "my_weights" in str(e), "err": e}


@program
def restore_missing_key_names_it(tf, tmp):
    path = _saved(tf, tmp, a=np.float32(1.0))
    tf.Variable(2.0, name="only_here")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        e = raises(lambda: saver.restore(sess, path))
    return {"named": "only_here" in str(e), "err": e}


@program
def partitioned_reuse_different_partitions(tf):
    with tf.variable_scope("s"):
        tf.get_variable("p", [6, 2], partitioner=tf.fixed_size_partitioner(3))
    with tf.variable_scope("s", reuse=True):
        return {"err": raises(lambda: tf.get_variable("p", [6, 2], partitioner=tf.fixed_size_partitioner(2)))}
