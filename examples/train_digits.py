"""The main job: train a two-layer network on scikit-learn's bundled digits, checkpoint, resume.

    python examples/train_digits.py                 # trains, saves every 50 steps, prints accuracy
    python examples/train_digits.py --steps 600     # killed and re-run: resumes from the latest checkpoint
    python examples/train_digits.py --eager         # the same loop in eager mode

The weights live on "/gpu:0" (cupy) where there is a GPU and fall back to
the CPU elsewhere. The forward and backward passes are plain array code
through the device's ``xp`` (numpy or cupy): this is how you plug in your
own model. Nothing is downloaded: the data ships inside scikit-learn.

Both of TF 1.x's modes: by default (graph mode) the train op is built once,
with a placeholder per gradient, and each ``sess.run(train, feed_dict=...)``
is one step (a cupy gradient fed to a GPU variable is not copied to the host);
with ``--eager``, ``apply_gradients`` applies each step as it is called.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np

import devices
import varstore as tf


def load_data(seed: int = 0):
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = len(x) // 5
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def build_model(hidden: int):
    tf.set_random_seed(42)
    with tf.device("/gpu:0"):
        w1 = tf.Variable(tf.glorot_uniform_initializer()([64, hidden]), name="layer1/weights")
        b1 = tf.Variable(tf.zeros([hidden]), name="layer1/biases")
        w2 = tf.Variable(tf.glorot_uniform_initializer()([hidden, 10]), name="layer2/weights")
        b2 = tf.Variable(tf.zeros([10]), name="layer2/biases")
    return [w1, b1, w2, b2]


def forward_backward(xp, params, x, y):
    """Cross-entropy loss and its gradients for a ReLU MLP, in plain array code."""
    w1, b1, w2, b2 = (p.value() for p in params)
    h_pre = x @ w1 + b1
    h = xp.maximum(h_pre, 0)
    logits = h @ w2 + b2
    logits = logits - logits.max(axis=1, keepdims=True)
    p = xp.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(-xp.log(p[xp.arange(n), y] + 1e-12).mean())
    d_logits = p
    d_logits[xp.arange(n), y] -= 1
    d_logits /= n
    g_w2 = h.T @ d_logits
    g_b2 = d_logits.sum(axis=0)
    d_h = (d_logits @ w2.T) * (h_pre > 0)
    g_w1 = x.T @ d_h
    g_b1 = d_h.sum(axis=0)
    return loss, [g_w1, g_b1, g_w2, g_b2]


def accuracy(xp, params, x, y) -> float:
    w1, b1, w2, b2 = (p.value() for p in params)
    logits = xp.maximum(x @ w1 + b1, 0) @ w2 + b2
    return float((logits.argmax(axis=1) == y).mean())


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", default=os.path.join("runs", "digits"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--keep", type=int, default=3, help="max_to_keep")
    ap.add_argument("--no-inspect", action="store_true")
    ap.add_argument("--eager", action="store_true", help="eager mode: apply_gradients applies at once")
    args = ap.parse_args(argv)
    if args.eager:
        with tf.eager_mode():
            return train(args)
    return train(args)


def train(args) -> float:
    os.makedirs(args.logdir, exist_ok=True)
    warnings.simplefilter("once", devices.PlacementWarning)

    (x_train, y_train), (x_test, y_test) = load_data()
    params = build_model(args.hidden)
    dev = params[0].device_object
    xp = dev.xp
    print(f"parameters on {dev.name} (requested {params[0].requested_device}); "
          f"{sum(int(np.prod(p.shape)) for p in params)} values")
    # The data goes to the same device as the weights, once.
    x_train, y_train, x_test, y_test = (dev.asarray(a) for a in (x_train, y_train, x_test, y_test))

    global_step = tf.train.get_or_create_global_step()
    opt = tf.train.AdamOptimizer(args.lr)
    if tf.executing_eagerly():
        opt.build(params)  # slots exist now, so the Saver saves them and a restore fills them
    else:
        # The train op, built once: one placeholder per gradient, fed at each step.
        grad_in = [tf.placeholder(p.dtype, p.shape, name="grad/" + p.op.name) for p in params]
        train_op = opt.apply_gradients(zip(grad_in, params), global_step=global_step)
    saver = tf.train.Saver(max_to_keep=args.keep)

    with tf.Session() as sess:
        latest = tf.train.latest_checkpoint(args.logdir)
        if latest:
            saver.restore(sess, latest)
            print(f"resumed from {latest} at step {int(global_step.numpy())}")
        else:
            sess.run(tf.global_variables_initializer())
        rng = np.random.default_rng(int(global_step.numpy()))
        t0 = time.perf_counter()
        step = int(global_step.numpy())
        path = latest
        while step < args.steps:
            idx = dev.asarray(rng.integers(0, x_train.shape[0], args.batch))
            loss, grads = forward_backward(xp, params, x_train[idx], y_train[idx])
            if tf.executing_eagerly():
                opt.apply_gradients(zip(grads, params), global_step=global_step)
            else:
                sess.run(train_op, feed_dict=dict(zip(grad_in, grads)))
            step = int(global_step.numpy())
            if step % args.save_every == 0 or step == args.steps:
                path = saver.save(sess, os.path.join(args.logdir, "model.ckpt"), global_step=step)
                print(f"step {step:5d}  loss {loss:.4f}  test acc {accuracy(xp, params, x_test, y_test):.4f}  "
                      f"saved {os.path.basename(path)}")
        acc = accuracy(xp, params, x_test, y_test)
        print(f"final held-out accuracy: {acc:.4f} ({len(y_test)} test images, "
              f"{time.perf_counter() - t0:.1f} s of training this run)")
    if path and not args.no_inspect:
        print(f"$ varstore inspect {path}")
        sys.stdout.flush()
        subprocess.run([sys.executable, "-m", "varstore.tools.cli", "inspect", path], check=True)
    return acc


if __name__ == "__main__":
    sys.exit(0 if main() >= 0.95 else 1)
