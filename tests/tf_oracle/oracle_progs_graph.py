"""Group 2: graph mode — ops built once, applied once per sess.run; placeholders; tensor arithmetic."""
import numpy as np
from oracle_harness import program


@program
def assign_add_built_once(tf):
    counter = tf.Variable(0, name="counter")
    inc = counter.assign_add(1)
    with tf.Session() as sess:
        sess.run(counter.initializer)
        before = sess.run(counter)
        fetched = [sess.run(inc) for _ in range(3)]
        return {"before": before, "fetched": fetched, "after": sess.run(counter)}


@program
def assign_fetch_returns_new_value(tf):
    v = tf.Variable([1.0, 2.0], name="v")
    a = v.assign([5.0, 6.0])
    s = v.assign_sub([1.0, 1.0])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"assign": sess.run(a), "sub1": sess.run(s), "sub2": sess.run(s), "v": sess.run(v)}


@program
def assign_not_run_changes_nothing(tf):
    v = tf.Variable(3.0, name="v")
    v.assign(10.0)
    v.assign_add(1.0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"v": sess.run(v)}


@program
def tf_assign_functions(tf):
    v = tf.Variable([1, 2, 3], name="v")
    a = tf.assign(v, [10, 20, 30])
    b = tf.assign_add(v, [1, 1, 1])
    c = tf.assign_sub(v, [2, 2, 2])
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"a": sess.run(a), "b": sess.run(b), "c": sess.run(c), "b2": sess.run(b), "v": sess.run(v)}


@program
def scatter_update_add_sub(tf):
    v = tf.Variable([1.0, 2.0, 3.0, 4.0, 5.0], name="v")
    up = tf.scatter_update(v, [0, 2], [10.0, 30.0])
    add = tf.scatter_add(v, [1, 1], [1.0, 2.0])  # duplicate indices add up
    sub = tf.scatter_sub(v, tf.constant([4]), tf.constant([5.0]))
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"up": sess.run(up), "add": sess.run(add), "add2": sess.run(add), "sub": sess.run(sub),
                "v": sess.run(v)}


@program
def scatter_rows(tf):
    v = tf.Variable(np.zeros((4, 3), np.float32), name="v")
    up = tf.scatter_update(v, [3, 0], [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    add = tf.scatter_add(v, [1], np.ones((1, 3), np.float32))
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(up)
        sess.run(add)
        return {"v": sess.run(v)}


@program
def scatter_with_indexed_slices(tf):
    v = tf.Variable(np.arange(8, dtype=np.float32).reshape(4, 2), name="v")
    g = tf.IndexedSlices(tf.constant([[1.0, 1.0], [2.0, 2.0]]), tf.constant([0, 3]), tf.constant([4, 2]))
    step = tf.scatter_sub(v, g.indices, 0.5 * g.values)
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(step)
        sess.run(step)
        return {"v": sess.run(v), "indices": sess.run(g.indices), "dense_shape": sess.run(g.dense_shape)}


@program
def group_runs_each_once(tf):
    a = tf.Variable(0, name="a")
    b = tf.Variable(10, name="b")
    both = tf.group(a.assign_add(1), b.assign_sub(1))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        r = sess.run(both)
        sess.run(both)
        return {"ret": r, "a": sess.run(a), "b": sess.run(b), "name": both.name}


@program
def no_op(tf):
    nop = tf.no_op(name="nothing")
    with tf.Session() as sess:
        return {"ret": sess.run(nop), "name": nop.name}


@program
def control_dependencies_read_after_update(tf):
    v = tf.Variable(1.0, name="v")
    inc = v.assign_add(1.0)
    with tf.control_dependencies([inc]):
        read = tf.identity(v.read_value())
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"r1": sess.run(read), "r2": sess.run(read), "v": sess.run(v)}


@program
def control_dependencies_group(tf):
    a = tf.Variable(0.0, name="a")
    b = tf.Variable(0.0, name="b")
    with tf.control_dependencies([a.assign_add(1.0)]):
        step = tf.group(b.assign_add(2.0))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(3):
            sess.run(step)
        return {"a": sess.run(a), "b": sess.run(b)}


@program
def same_fetch_twice_runs_once(tf):
    v = tf.Variable(0, name="v")
    inc = v.assign_add(1)
    with tf.Session() as sess:
        sess.run(v.initializer)
        r = sess.run([inc, inc])
        return {"r": r, "v": sess.run(v)}


@program
def placeholder_feed(tf):
    x = tf.placeholder(tf.float32, shape=[None, 3], name="x")
    y = x * 2.0 + 1.0
    with tf.Session() as sess:
        a = sess.run(y, feed_dict={x: np.ones((2, 3))})
        b = sess.run(y, feed_dict={x: [[1.0, 2.0, 3.0]]})
    return {"a": a, "b": b, "shape": x.get_shape().as_list(), "name": x.name, "dtype": x.dtype.name,
            "y_shape": y.get_shape().as_list()}


@program
def placeholder_no_shape(tf):
    x = tf.placeholder(tf.int32)
    with tf.Session() as sess:
        return {"scalar": sess.run(x + 1, {x: 5}), "matrix": sess.run(x * 2, {x: [[1, 2], [3, 4]]}),
                "ndims": x.shape.ndims}


@program
def placeholder_missing_feed(tf):
    x = tf.placeholder(tf.float32, shape=[2])
    y = x + 1.0
    with tf.Session() as sess:
        sess.run(y)


@program
def placeholder_with_default(tf):
    x = tf.placeholder_with_default(tf.constant([1.0, 2.0]), shape=[2])
    with tf.Session() as sess:
        return {"default": sess.run(x * 3.0), "fed": sess.run(x * 3.0, {x: [5.0, 6.0]})}


@program
def feed_an_intermediate_tensor(tf):
    x = tf.placeholder(tf.float32, [])
    y = x * 2.0
    z = y + 1.0
    with tf.Session() as sess:
        return {"normal": sess.run(z, {x: 3.0}), "fed_y": sess.run(z, {y: 10.0})}


@program
def moving_assign_with_placeholder(tf):
    w = tf.Variable([0.0, 0.0], name="w")
    ph = tf.placeholder(tf.float32, shape=[2])
    update = w.assign(w * 0.9 + ph * 0.1)
    with tf.Session() as sess:
        sess.run(w.initializer)
        for x in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]):
            sess.run(update, feed_dict={ph: x})
        return {"w": sess.run(w)}


@program
def operators_on_variables(tf):
    a = tf.Variable([[1.0, -2.0], [3.0, 4.0]], name="a")
    b = tf.Variable([[0.5, 1.0], [2.0, -1.0]], name="b")
    exprs = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "pow": a ** 2, "neg": -a, "abs": abs(a),
             "matmul": a @ b, "radd": 1.0 + a, "rsub": 1.0 - a, "rmul": 3.0 * a, "rdiv": 1.0 / b,
             "rpow": 2.0 ** a, "mixed": a * 2 + b / 4}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return sess.run(exprs)


@program
def operators_on_int_variables(tf):
    a = tf.Variable([7, -3, 5], name="a")
    exprs = {"add": a + 1, "mul": a * 2, "floordiv": a // 2, "mod": a % 3, "neg": -a, "truediv": a / 2}
    with tf.Session() as sess:
        sess.run(a.initializer)
        return sess.run(exprs)


@program
def comparison_operators(tf):
    a = tf.Variable([1.0, 2.0, 3.0], name="a")
    exprs = {"lt": a < 2.0, "le": a <= 2.0, "gt": a > 2.0, "ge": a >= 2.0}
    with tf.Session() as sess:
        sess.run(a.initializer)
        return sess.run(exprs)


@program
def math_functions(tf):
    x = tf.Variable([1.0, 4.0, 9.0], name="x")
    y = tf.constant([2.0, 2.0, 10.0])
    exprs = {"cast": tf.cast(x, tf.int32), "identity": tf.identity(x), "reshape": tf.reshape(x, [3, 1]),
             "square": tf.square(x), "sqrt": tf.sqrt(x), "exp": tf.exp(x / 9.0), "log": tf.log(x),
             "maximum": tf.maximum(x, y), "minimum": tf.minimum(x, y), "add_n": tf.add_n([x, y, x]),
             "zeros_like": tf.zeros_like(x), "ones_like": tf.ones_like(x), "reshape_infer": tf.reshape(x, [-1, 1])}
    with tf.Session() as sess:
        sess.run(x.initializer)
        return sess.run(exprs)


@program
def reductions(tf):
    x = tf.Variable([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], name="x")
    exprs = {"sum": tf.reduce_sum(x), "sum0": tf.reduce_sum(x, axis=0), "sum1": tf.reduce_sum(x, 1),
             "sum_keep": tf.reduce_sum(x, axis=1, keepdims=True), "mean": tf.reduce_mean(x),
             "mean0": tf.reduce_mean(x, axis=0), "mean_keep": tf.reduce_mean(x, axis=[0, 1], keepdims=True),
             "int_mean": tf.reduce_mean(tf.cast(x, tf.int32))}
    with tf.Session() as sess:
        sess.run(x.initializer)
        return sess.run(exprs)


@program
def matmul_transpose(tf):
    a = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="a")
    b = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    with tf.Session() as sess:
        sess.run(a.initializer)
        return {"abT": sess.run(tf.matmul(a, b, transpose_b=True)), "aTb": sess.run(tf.matmul(a, b, transpose_a=True))}


@program
def constants(tf):
    cs = {"ints": tf.constant([1, 2]), "float": tf.constant(1.5), "f64": tf.constant(np.float64(2.5)),
          "as_float": tf.constant([1, 2], dtype=tf.float32), "filled": tf.constant(0, shape=[2, 2]),
          "np_int64": tf.constant(np.array([3], np.int64))}
    with tf.Session() as sess:
        vals = sess.run(cs)
    vals["shapes"] = {k: c.get_shape().as_list() for k, c in cs.items()}
    return vals


@program
def eval_and_run_with_default_session(tf):
    v = tf.Variable([1.0, 2.0], name="v")
    inc = v.assign_add([1.0, 1.0])
    with tf.Session():
        tf.global_variables_initializer().run()
        inc.op.run()
        inc.eval()
        return {"v": v.eval(), "twice": (v * 2).eval(), "default_set": tf.get_default_session() is not None}


@program
def eval_with_session_argument(tf):
    v = tf.Variable(3.0, name="v")
    sess = tf.Session()
    v.initializer.run(session=sess)
    out = {"v": v.eval(session=sess), "plus": (v + 1.0).eval(session=sess)}
    sess.close()
    return out


@program
def as_default(tf):
    v = tf.Variable(2, name="v")
    sess = tf.Session()
    with sess.as_default():
        v.initializer.run()
        r = v.eval()
    sess.close()
    return {"v": r}


@program
def interactive_session(tf):
    sess = tf.InteractiveSession()
    v = tf.Variable([1, 2], name="v")
    v.initializer.run()
    v.assign_add([1, 1]).eval()
    r = v.eval()
    sess.close()
    return {"v": r}


@program
def run_structures(tf):
    a = tf.Variable(1.0, name="a")
    b = tf.Variable([2, 3], name="b")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"list": sess.run([a, b]), "tuple": sess.run((a, b)), "dict": sess.run({"a": a, "nested": [b, (a,)]}),
                "single_list": sess.run([a]), "with_op": sess.run([tf.no_op(), a])}


@program
def run_op_returns_none(tf):
    v = tf.Variable(1.0, name="v")
    init = tf.global_variables_initializer()
    with tf.Session() as sess:
        return {"init": sess.run(init), "initializer": sess.run(v.initializer), "group": sess.run(tf.group(v.initializer))}


@program
def values_persist_across_runs_not_sessions(tf):
    v = tf.Variable(1.0, name="v")
    inc = v.assign_add(1.0)
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(inc)
        first = sess.run(v)
    with tf.Session() as sess:  # a new session: the variable must be initialized again in TF
        sess.run(v.initializer)
        second = sess.run(v)
    return {"first": first, "second": second}


@program
def indexed_slices_attributes(tf):
    s = tf.IndexedSlices(tf.constant([[1.0, 2.0]]), tf.constant([1]), dense_shape=tf.constant([3, 2]))
    with tf.Session() as sess:
        return {"values": sess.run(s.values), "indices": sess.run(s.indices), "dense_shape": sess.run(s.dense_shape),
                "dense": sess.run(tf.convert_to_tensor(s))}


@program
def read_value_and_value(tf):
    v = tf.Variable([1.0], name="v")
    r = v.read_value()
    val = v.value()
    with tf.Session() as sess:
        sess.run(v.initializer)
        sess.run(v.assign([4.0]))
        return {"read": sess.run(r), "value": sess.run(val)}


@program
def assign_chain_in_one_run(tf):
    v = tf.Variable(1.0, name="v")
    a = v.assign(2.0)
    with tf.control_dependencies([a]):
        b = v.assign_add(3.0)
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"b": sess.run(b), "v": sess.run(v)}


@program
def gather_and_slicing(tf):
    v = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3), name="v")
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"gather": sess.run(tf.gather(v, [2, 0])), "row": sess.run(v[1]), "slice": sess.run(v[1:3, :2])}


@program
def load_into_variable(tf):
    v = tf.Variable(tf.zeros([2, 2]), name="v")
    with tf.Session() as sess:
        sess.run(v.initializer)
        v.load(np.ones((2, 2)) * 3, sess)
        return {"v": sess.run(v)}


@program
def linear_model_with_feed(tf):
    x = tf.placeholder(tf.float32, [None, 2], name="x")
    w = tf.Variable([[1.0], [2.0]], name="w")
    b = tf.Variable([0.5], name="b")
    y = tf.matmul(x, w) + b
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"y": sess.run(y, {x: [[1.0, 1.0], [2.0, 3.0], [0.0, -1.0]]}), "y_shape": y.get_shape().as_list()}


@program
def feed_and_fetch_by_name(tf):
    x = tf.placeholder(tf.float32, [2], name="x")
    v = tf.Variable([1.0, 2.0], name="v")
    tf.add(x, v, name="out")
    init = tf.global_variables_initializer()
    with tf.Session() as sess:
        sess.run(init.name)
        return {"out": sess.run("out:0", feed_dict={"x:0": [10.0, 20.0]}), "v": sess.run("v:0"),
                "init_name": init.name}


@program
def read_modify_write_each_run(tf):
    v = tf.Variable(1.0, name="v")
    double = v.assign(v * 2.0)
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"runs": [sess.run(double) for _ in range(4)]}


@program
def graph_get_tensor_by_name(tf):
    tf.Variable([1, 2], name="v")
    with tf.name_scope("s"):
        tf.Variable(3.0, name="w")
    g = tf.get_default_graph()
    t = g.get_tensor_by_name("s/w:0")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"v": sess.run(g.get_tensor_by_name("v:0")), "w": sess.run(t), "op": g.get_operation_by_name("v").name,
                "t_name": t.name}


@program
def callable_initial_value(tf):
    v = tf.Variable(lambda: tf.ones([2, 2]) * 3.0, name="v")
    with tf.Session() as sess:
        sess.run(v.initializer)
        return {"v": sess.run(v), "shape": v.get_shape().as_list()}


@program
def dtypes_of_variables(tf):
    vs = {n: tf.Variable(tf.zeros([2], dtype=d), name=n)
          for n, d in (("f16", tf.float16), ("bf16", tf.bfloat16), ("i8", tf.int8), ("u8", tf.uint8),
                       ("i64", tf.int64), ("f64", tf.float64), ("c64", tf.complex64), ("b", tf.bool))}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        vals = sess.run(vs)
    return {"values": vals, "names": {n: v.dtype.base_dtype.name for n, v in vs.items()}}


@program
def train_op_name(tf):
    w = tf.Variable([1.0], name="w")
    train = tf.train.GradientDescentOptimizer(0.1).apply_gradients([(tf.constant([1.0]), w)], name="train")
    g = tf.group(train, name="step")
    return {"train": train.name, "group": g.name}


@program
def variable_initialized_from_a_fed_placeholder(tf):
    init = tf.placeholder(tf.float32, shape=[3, 2])
    emb = tf.Variable(init, name="emb")
    with tf.Session() as sess:
        sess.run(emb.initializer, feed_dict={init: np.arange(6, dtype=np.float32).reshape(3, 2)})
        return {"emb": sess.run(emb), "shape": emb.get_shape().as_list()}
