"""Group 5: tf.train — Saver and checkpoint state, readers, init_from_checkpoint, EMA, clusters and
replica_device_setter, MonitoredTrainingSession, meta graphs."""
import os

import numpy as np
from oracle_harness import program


def _rel(paths, tmp):
    return [os.path.relpath(p, tmp) for p in paths]


def _model(tf):
    w = tf.Variable([[1.0, 2.0], [3.0, 4.0]], name="w")
    b = tf.Variable([0.5], name="b")
    return w, b


@program
def save_restore_values_between_sessions(tf, tmp):
    w, b = _model(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(w.assign(w * 10.0))
        path = saver.save(sess, os.path.join(tmp, "m"))
    with tf.Session() as sess:
        saver.restore(sess, path)
        return {"w": sess.run(w), "b": sess.run(b)}


@program
def checkpoint_state(tf, tmp):
    _model(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for step in (10, 20, 30):
            saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=step)
    st = tf.train.get_checkpoint_state(tmp)
    return {"latest": os.path.relpath(tf.train.latest_checkpoint(tmp), tmp),
            "model_checkpoint_path": os.path.relpath(st.model_checkpoint_path, tmp),
            "all": _rel(st.all_model_checkpoint_paths, tmp), "last": _rel(saver.last_checkpoints, tmp)}


@program
def checkpoint_state_empty_dir(tf, tmp):
    return {"state": tf.train.get_checkpoint_state(tmp), "latest": tf.train.latest_checkpoint(tmp),
            "missing_dir": tf.train.latest_checkpoint(os.path.join(tmp, "nope"))}


@program
def max_to_keep(tf, tmp):
    _model(tf)
    saver = tf.train.Saver(max_to_keep=2)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        paths = [saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=s) for s in range(1, 5)]
    return {"last": _rel(saver.last_checkpoints, tmp), "exists": [tf.train.checkpoint_exists(p) for p in paths],
            "all": _rel(tf.train.get_checkpoint_state(tmp).all_model_checkpoint_paths, tmp)}


@program
def max_to_keep_none_keeps_all(tf, tmp):
    _model(tf)
    saver = tf.train.Saver(max_to_keep=None)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        paths = [saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=s) for s in range(1, 4)]
    return {"exists": [tf.train.checkpoint_exists(p) for p in paths],
            "latest": os.path.relpath(tf.train.latest_checkpoint(tmp), tmp)}


@program
def keep_checkpoint_every_n_hours(tf, tmp):
    _model(tf)
    saver = tf.train.Saver(max_to_keep=1, keep_checkpoint_every_n_hours=10000)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        paths = [saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=s) for s in range(1, 4)]
    return {"last": _rel(saver.last_checkpoints, tmp), "exists": [tf.train.checkpoint_exists(p) for p in paths]}


@program
def checkpoint_mtimes(tf, tmp):
    _model(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        paths = [saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=s) for s in (1, 2)]
    mt = tf.train.get_checkpoint_mtimes(paths)
    return {"n": len(mt), "floats": [isinstance(t, float) for t in mt], "ordered": mt[0] <= mt[1]}


@program
def list_and_load_variable(tf, tmp):
    w, b = _model(tf)
    with tf.variable_scope("scope"):
        c = tf.get_variable("c", [3], dtype=tf.int64, initializer=tf.zeros_initializer())
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=3)
    return {"list": tf.train.list_variables(path), "list_dir": tf.train.list_variables(tmp),
            "w": tf.train.load_variable(path, "w"), "c": tf.train.load_variable(tmp, "scope/c"), "c_name": c.name,
            "b": tf.train.load_variable(path, "b:0")}


@program
def checkpoint_reader(tf, tmp):
    _model(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    reader = tf.train.NewCheckpointReader(path)
    shapes = reader.get_variable_to_shape_map()
    return {"shapes": {k: shapes[k] for k in sorted(shapes)}, "has_w": reader.has_tensor("w"),
            "has_x": reader.has_tensor("x"), "w": reader.get_tensor("w"),
            "dtypes": {k: v.name for k, v in sorted(reader.get_variable_to_dtype_map().items())}}


def _save_scoped(tf, tmp):
    with tf.variable_scope("old_scope"):
        tf.get_variable("a", initializer=tf.constant([1.0, 2.0]))
        tf.get_variable("b", initializer=tf.constant([[3.0]]))
    tf.get_variable("v", initializer=tf.constant([7.0]))
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(tmp, "pre.ckpt"))
    tf.reset_default_graph()
    return path


@program
def init_from_checkpoint_scope_map(tf, tmp):
    path = _save_scoped(tf, tmp)
    with tf.variable_scope("new_scope"):
        a = tf.get_variable("a", [2])
        b = tf.get_variable("b", [1, 1])
    c = tf.get_variable("c", [1], initializer=tf.constant_initializer(9.0))
    tf.train.init_from_checkpoint(path, {"old_scope/": "new_scope/"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"a": sess.run(a), "b": sess.run(b), "c": sess.run(c)}


@program
def init_from_checkpoint_name_map(tf, tmp):
    path = _save_scoped(tf, tmp)
    w = tf.get_variable("w", [1])
    tf.train.init_from_checkpoint(path, {"v": "w"})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"w": sess.run(w)}


@program
def init_from_checkpoint_variable_value(tf, tmp):
    path = _save_scoped(tf, tmp)
    with tf.variable_scope("x"):
        a = tf.get_variable("a", [2])
    tf.train.init_from_checkpoint(path, {"old_scope/a": a})
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"a": sess.run(a)}


@program
def ema_apply_and_average(tf):
    w = tf.Variable([1.0, 2.0], name="w")
    b = tf.Variable(0.0, name="b")
    ema = tf.train.ExponentialMovingAverage(decay=0.9)
    maintain = ema.apply([w, b])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = sess.run(ema.average(w))
        for x in (3.0, 5.0, 7.0):
            sess.run([w.assign([x, x]), b.assign(x)])
            sess.run(maintain)
        return {"w_avg": sess.run(ema.average(w)), "b_avg": sess.run(ema.average(b)), "first": first,
                "avg_name": ema.average_name(w), "avg_var_name": ema.average(w).name,
                "global": [v.name for v in tf.global_variables()],
                "trainable": [v.name for v in tf.trainable_variables()]}


@program
def ema_num_updates(tf):
    w = tf.Variable(0.0, name="w")
    step = tf.Variable(0, name="step", trainable=False)
    ema = tf.train.ExponentialMovingAverage(0.99, num_updates=step)
    maintain = ema.apply([w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        out = []
        for i in range(1, 4):
            sess.run([w.assign(float(i) * 10.0), step.assign(i)])
            sess.run(maintain)
            out.append(sess.run(ema.average(w)))
        return {"avgs": out}


@program
def ema_variables_to_restore(tf, tmp):
    w = tf.Variable([1.0, 2.0], name="w")
    gs = tf.Variable(0, name="global_step", trainable=False)
    ema = tf.train.ExponentialMovingAverage(0.5)
    maintain = ema.apply([w])
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(w.assign([3.0, 4.0]))
        sess.run(maintain)
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    tf.reset_default_graph()
    w = tf.Variable([0.0, 0.0], name="w")
    gs = tf.Variable(0, name="global_step", trainable=False)
    ema = tf.train.ExponentialMovingAverage(0.5)
    to_restore = ema.variables_to_restore()
    saver = tf.train.Saver(to_restore)
    with tf.Session() as sess:
        saver.restore(sess, path)
        return {"keys": sorted(to_restore), "vars": [to_restore[k].name for k in sorted(to_restore)],
                "w": sess.run(w), "gs": sess.run(gs)}


@program
def ema_with_control_dependencies_train(tf):
    w = tf.Variable([1.0], name="w")
    opt = tf.train.GradientDescentOptimizer(0.5)
    step = opt.apply_gradients([(tf.constant([1.0]), w)])
    ema = tf.train.ExponentialMovingAverage(0.5)
    with tf.control_dependencies([step]):
        train = ema.apply([w])
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(2):
            sess.run(train)
        return {"w": sess.run(w), "avg": sess.run(ema.average(w))}


@program
def cluster_spec(tf):
    cluster = tf.train.ClusterSpec({"ps": ["ps0:2222", "ps1:2222"], "worker": ["w0:2222", "w1:2222", "w2:2222"]})
    return {"as_dict": cluster.as_dict(), "jobs": sorted(cluster.jobs), "num_ps": cluster.num_tasks("ps"),
            "num_worker": cluster.num_tasks("worker"), "addr": cluster.task_address("worker", 2),
            "indices": cluster.task_indices("ps"), "job_tasks": cluster.job_tasks("ps")}


@program(kept={"devices": "`v.device` under `tf.device` for a place this machine lacks"})
def replica_device_setter_round_robin(tf):
    cluster = tf.train.ClusterSpec({"ps": ["ps0:2222", "ps1:2222"], "worker": ["w0:2222"]})
    with tf.device(tf.train.replica_device_setter(cluster=cluster)):
        vs = [tf.Variable(tf.zeros([2]), name=f"v{i}") for i in range(4)]
    return {"devices": [v.device for v in vs], "names": [v.name for v in vs]}


@program(kept={"devices": "`v.device` under `tf.device` for a place this machine lacks"})
def replica_device_setter_ps_tasks(tf):
    with tf.device(tf.train.replica_device_setter(ps_tasks=3)):
        vs = [tf.Variable(tf.zeros([2]), name=f"v{i}") for i in range(4)]
    return {"devices": [v.device for v in vs]}


def _mts_graph(tf):
    w = tf.Variable([0.0, 0.0], name="w")
    gs = tf.train.get_or_create_global_step()
    train = tf.train.GradientDescentOptimizer(1.0).apply_gradients([(tf.constant([1.0, 2.0]), w)], global_step=gs)
    return w, gs, train


@program
def monitored_training_session(tf, tmp):
    w, gs, train = _mts_graph(tf)
    with tf.train.MonitoredTrainingSession(checkpoint_dir=tmp, save_checkpoint_steps=2, save_summaries_steps=None,
                                           save_summaries_secs=None, log_step_count_steps=None) as sess:
        for _ in range(5):
            sess.run(train)
        final_w = sess.run(w)
    st = tf.train.get_checkpoint_state(tmp)
    steps = sorted(int(p.rsplit("-", 1)[1]) for p in st.all_model_checkpoint_paths)
    tf.reset_default_graph()
    w, gs, train = _mts_graph(tf)
    with tf.train.MonitoredTrainingSession(checkpoint_dir=tmp, save_checkpoint_steps=2, save_summaries_steps=None,
                                           save_summaries_secs=None, log_step_count_steps=None) as sess:
        restored_gs, restored_w = sess.run([gs, w])
        sess.run(train)
    return {"final_w": final_w, "steps": steps, "latest": os.path.basename(tf.train.latest_checkpoint(tmp)),
            "restored_gs": restored_gs, "restored_w": restored_w}


@program
def monitored_session_scaffold_saver(tf, tmp):
    w, gs, train = _mts_graph(tf)
    scaffold = tf.train.Scaffold(saver=tf.train.Saver(max_to_keep=1))
    with tf.train.MonitoredTrainingSession(checkpoint_dir=tmp, scaffold=scaffold, save_checkpoint_steps=1,
                                           save_summaries_steps=None, save_summaries_secs=None,
                                           log_step_count_steps=None) as sess:
        for _ in range(3):
            sess.run(train)
    st = tf.train.get_checkpoint_state(tmp)
    return {"all": [os.path.basename(p) for p in st.all_model_checkpoint_paths]}


@program
def checkpoint_saver_hook(tf, tmp):
    w, gs, train = _mts_graph(tf)
    hook = tf.train.CheckpointSaverHook(checkpoint_dir=tmp, save_steps=3)
    with tf.train.MonitoredTrainingSession(hooks=[hook], save_summaries_steps=None, save_summaries_secs=None,
                                           log_step_count_steps=None) as sess:
        for _ in range(4):
            sess.run(train)
    st = tf.train.get_checkpoint_state(tmp)
    return {"all": [os.path.basename(p) for p in st.all_model_checkpoint_paths],
            "w": tf.train.load_variable(tmp, "w")}


@program
def meta_graph_import(tf, tmp):
    v1 = tf.Variable([1.0, 2.0], name="v1")
    with tf.name_scope("s"):
        tf.Variable(3, name="v2")
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(v1.assign([5.0, 6.0]))
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    tf.reset_default_graph()
    saver = tf.train.import_meta_graph(path + ".meta")
    graph = tf.get_default_graph()
    with tf.Session() as sess:
        saver.restore(sess, path)
        t = graph.get_tensor_by_name("v1:0")
        return {"v1": sess.run(t), "v2": sess.run(graph.get_tensor_by_name("s/v2:0")),
                "op": graph.get_operation_by_name("v1").name,
                "global": [v.name for v in tf.global_variables()],
                "trainable": [v.name for v in tf.trainable_variables()]}


@program
def meta_graph_import_scope(tf, tmp):
    tf.Variable([1.0, 2.0], name="v1")
    path = os.path.join(tmp, "graph.meta")
    tf.train.export_meta_graph(filename=path)
    tf.reset_default_graph()
    tf.train.import_meta_graph(path, import_scope="imported")
    graph = tf.get_default_graph()
    t = graph.get_tensor_by_name("imported/v1:0")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        return {"v1": sess.run(t), "global": [v.name for v in tf.global_variables()], "name": t.name}


@program
def meta_graph_then_train_restored(tf, tmp):
    w = tf.Variable([1.0], name="w")
    gs = tf.Variable(0, name="global_step", trainable=False)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=gs)
    tf.reset_default_graph()
    saver = tf.train.import_meta_graph(path + ".meta")
    w = tf.trainable_variables()[0]
    inc = w.assign_add([1.0])
    with tf.Session() as sess:
        saver.restore(sess, tf.train.latest_checkpoint(tmp))
        sess.run(inc)
        return {"w": sess.run(w), "path": os.path.basename(path), "w_name": w.name}


@program
def saver_write_meta_graph_false(tf, tmp):
    _model(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        p = saver.save(sess, os.path.join(tmp, "model.ckpt"), write_meta_graph=False)
    return {"meta": os.path.exists(p + ".meta"), "exists": tf.train.checkpoint_exists(p),
            "state": os.path.exists(os.path.join(tmp, "checkpoint"))}


@program
def saver_latest_filename(tf, tmp):
    _model(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        saver.save(sess, os.path.join(tmp, "a"), latest_filename="other_state")
    return {"default": tf.train.latest_checkpoint(tmp),
            "other": os.path.basename(tf.train.latest_checkpoint(tmp, latest_filename="other_state"))}


@program
def saver_restore_subset_then_init_rest(tf, tmp):
    w, b = _model(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(w.assign(tf.zeros([2, 2])))
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    tf.reset_default_graph()
    w, b = _model(tf)
    extra = tf.Variable(np.ones(3, np.float32), name="extra")
    with tf.Session() as sess:
        tf.train.Saver([w, b]).restore(sess, path)
        sess.run(tf.variables_initializer([extra]))
        return {"w": sess.run(w), "extra": sess.run(extra)}


@program
def saver_global_step_from_tensor(tf, tmp):
    _model(tf)
    gs = tf.train.get_or_create_global_step()
    inc = tf.assign_add(gs, 5)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(inc)
        p = saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=gs)
        step = tf.train.global_step(sess, gs)
    return {"path": os.path.basename(p), "step": step, "step_type": type(step).__name__}


@program(kept={"kept": "A new `Saver` and the checkpoints already in its directory"})
def new_saver_and_existing_checkpoints(tf, tmp):
    _model(tf)
    saver = tf.train.Saver(max_to_keep=2)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for s in (1, 2):
            saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=s)
    tf.reset_default_graph()  # a restarted program
    _model(tf)
    saver = tf.train.Saver(max_to_keep=2)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=3)
    st = tf.train.get_checkpoint_state(tmp)
    paths = [os.path.join(tmp, f"model.ckpt-{s}") for s in (1, 2, 3)]
    return {"latest": os.path.basename(st.model_checkpoint_path),
            "kept": {"last": _rel(saver.last_checkpoints, tmp), "all": _rel(st.all_model_checkpoint_paths, tmp),
                     "exists": [tf.train.checkpoint_exists(p) for p in paths]}}


@program
def recover_last_checkpoints(tf, tmp):
    _model(tf)
    saver = tf.train.Saver(max_to_keep=2)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for s in (1, 2):
            saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=s)
        saver2 = tf.train.Saver(max_to_keep=2)
        saver2.recover_last_checkpoints(tf.train.get_checkpoint_state(tmp).all_model_checkpoint_paths)
        saver2.save(sess, os.path.join(tmp, "model.ckpt"), global_step=3)
    return {"last": _rel(saver2.last_checkpoints, tmp),
            "exists": [tf.train.checkpoint_exists(os.path.join(tmp, f"model.ckpt-{s}")) for s in (1, 2, 3)]}


@program
def save_relative_paths(tf, tmp):
    _model(tf)
    saver = tf.train.Saver(save_relative_paths=True)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=1)
    st = tf.train.get_checkpoint_state(tmp)
    return {"latest": os.path.relpath(tf.train.latest_checkpoint(tmp), tmp),
            "abs": os.path.isabs(st.model_checkpoint_path)}


def _adam_graph(tf):
    w = tf.Variable([1.0, -1.0], name="w")
    gs = tf.train.get_or_create_global_step()
    g = tf.placeholder(tf.float32, [2])
    opt = tf.train.AdamOptimizer(0.1)
    train = opt.apply_gradients([(g, w)], global_step=gs)
    return w, gs, g, opt, train


@program
def resume_training_with_adam_slots(tf, tmp):
    w, gs, g, opt, train = _adam_graph(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for x in ([1.0, 2.0], [0.5, -1.0]):
            sess.run(train, {g: x})
        saver.save(sess, os.path.join(tmp, "model.ckpt"), global_step=gs)
    keys = [k for k, _ in tf.train.list_variables(tmp)]
    tf.reset_default_graph()
    w, gs, g, opt, train = _adam_graph(tf)
    saver = tf.train.Saver()
    with tf.Session() as sess:
        saver.restore(sess, tf.train.latest_checkpoint(tmp))
        sess.run(train, {g: [-1.0, 1.0]})
        return {"keys": keys, "w": sess.run(w), "gs": sess.run(gs), "m": sess.run(opt.get_slot(w, "m")),
                "latest": os.path.basename(tf.train.latest_checkpoint(tmp))}


@program
def saver_of_trainable_variables_only(tf, tmp):
    w, gs, g, opt, train = _adam_graph(tf)
    saver = tf.train.Saver(tf.trainable_variables())
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(train, {g: [1.0, 1.0]})
        path = saver.save(sess, os.path.join(tmp, "model.ckpt"))
    return {"keys": [k for k, _ in tf.train.list_variables(path)]}
