"""Group 7: eager mode (TF 1.x's other mode). These run in their own TF subprocess, after
``tf.enable_eager_execution()``; under varstore the harness enables eager mode around each."""
import os

import numpy as np
from oracle_harness import program, raises


@program(mode="eager")
def executing_eagerly(tf):
    return {"eager": tf.executing_eagerly()}


@program(mode="eager")
def variable_initialized_when_created(tf):
    v = tf.Variable([1.0, 2.0], name="v")
    return {"value": v.numpy(), "name": v.name, "shape": v.shape.as_list(), "dtype": v.dtype.name}


@program(mode="eager")
def assign_runs_when_called(tf):
    v = tf.Variable(0, name="counter")
    v.assign_add(1)
    v.assign_add(1)
    after_add = v.numpy()
    v.assign(10)
    v.assign_sub(3)
    return {"after_add": after_add, "value": v.numpy(), "read": v.read_value().numpy()}


@program(mode="eager")
def arithmetic_is_immediate(tf):
    v = tf.Variable([[1.0, 2.0], [3.0, 4.0]], name="v")
    y = tf.matmul(v, v) + 1.0
    return {"y": y.numpy(), "sum": tf.reduce_sum(v).numpy(), "mul": (v * 2).numpy()}


@program(mode="eager")
def apply_gradients_runs_when_called(tf):
    w = tf.Variable([1.0, 2.0], name="w")
    gs = tf.Variable(0, name="global_step", trainable=False)
    opt = tf.train.AdamOptimizer(0.1)
    for _ in range(3):
        opt.apply_gradients([(tf.constant([0.5, -0.5]), w)], global_step=gs)
    return {"w": w.numpy(), "gs": gs.numpy(), "m": opt.get_slot(w, "m").numpy(), "slots": opt.get_slot_names()}


@program(mode="eager")
def momentum_numpy_gradients(tf):
    w = tf.Variable(np.ones(3, np.float32), name="w")
    opt = tf.train.MomentumOptimizer(0.1, 0.9)
    for i in range(3):
        opt.apply_gradients([(np.full(3, float(i), np.float32), w)])
    return {"w": w.numpy()}


@program(mode="eager", kept={"names": "Variables in eager mode"})
def names_not_uniquified(tf):
    a = tf.Variable(1.0, name="v")
    b = tf.Variable(2.0, name="v")
    return {"names": [a.name, b.name]}


@program(mode="eager", kept={"global": "Variables in eager mode"})
def no_global_collections(tf):
    tf.Variable(1.0, name="v")
    return {"global": [v.name for v in tf.global_variables()]}


@program(mode="eager")
def placeholder_is_an_error(tf):
    return {"err": raises(lambda: tf.placeholder(tf.float32, [2]))}


@program(mode="eager")
def scatter_update_runs_when_called(tf):
    v = tf.Variable([1.0, 2.0, 3.0], name="v")
    tf.scatter_update(v, [1], [20.0])
    v.scatter_sub(tf.IndexedSlices(tf.constant([1.0]), tf.constant([2])))
    return {"v": v.numpy()}


@program(mode="eager")
def initialized_value_and_initializer(tf):
    a = tf.Variable([1.0, 2.0], name="a")
    a.assign([5.0, 6.0])
    return {"initialized_value": raises(lambda: a.initialized_value()),
            "initial_value": raises(lambda: a.initial_value), "value": a.numpy()}


@program(mode="eager")
def saver_save_restore(tf, tmp):
    v = tf.Variable([1.0, 2.0], name="v")
    saver = tf.train.Saver([v])
    path = saver.save(None, os.path.join(tmp, "model.ckpt"))
    v.assign([0.0, 0.0])
    saver.restore(None, path)
    return {"v": v.numpy(), "path": os.path.basename(path)}


@program(mode="eager")
def global_step_and_slot_names(tf):
    w = tf.Variable([1.0, 2.0], name="w")
    gs = tf.train.get_or_create_global_step()
    opt = tf.train.MomentumOptimizer(0.1, 0.9)
    opt.apply_gradients([(tf.constant([1.0, 1.0]), w)], global_step=gs)
    return {"gs": gs.numpy(), "gs_name": gs.name, "slot": opt.get_slot(w, "momentum").name,
            "slot_value": opt.get_slot(w, "momentum").numpy()}


@program(mode="eager")
def assign_returns_usable_value(tf):
    v = tf.Variable([1.0, 2.0], name="v")
    r = v.assign_add([1.0, 1.0])
    return {"r": r.numpy(), "v": v.numpy()}
