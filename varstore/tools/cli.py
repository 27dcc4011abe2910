"""The ``varstore`` command (also ``python -m varstore``): inspect and verify checkpoints.

    varstore --version            (the version, and where the package was imported from)
    varstore inspect PATH [--tensor NAME] [--all] [--names]
    varstore verify PATH          (a checkpoint file, or a directory with a state file)
    varstore summary PATH         (variables per device, with the .meta beside the file)
    varstore convert SRC DST [--map OLD=NEW]... [--map-file FILE] [--from FMT] [--to FMT] [--force]
                                  (varstore, safetensors, .npz, PyTorch state_dict, TF bundles; both ways)

Exit status: 0 fine, 1 corruption found, 2 missing or unreadable input.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from devices.errors import DataLossError, NotFoundError, OpError

from .. import __version__
from ..checkpoint import store
from ..checkpoint.shards import open_checkpoint as CheckpointReader  # follows a sharded save's shards
from ..checkpoint.tf import is_bundle  # a TensorFlow bundle prefix is a checkpoint too

FORMATS = ("varstore", "safetensors", "npz", "torch", "tf")  # convert.FORMATS, without importing it


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _table(rows: list[tuple[str, ...]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) if i == 3 else c.ljust(w[i])
                               for i, c in enumerate(r)).rstrip() for r in rows)


def cmd_inspect(args: argparse.Namespace) -> int:
    with CheckpointReader(args.path) as r:
        if args.names:
            for n in r.names():
                print(n)
            return 0
        if args.tensor:
            print(f"tensor_name:  {args.tensor}")
            print(r.get_tensor(args.tensor))
            return 0
        status = dict(r.verify())
        rows = [("name", "dtype", "shape", "bytes", "checksum")]
        total = 0
        for n in r.names():
            total += r.nbytes(n)
            rows.append((n, r.dtype(n).name, str(list(r.shape(n))), _human(r.nbytes(n)),
                         "ok" if status.get(n) is None else "BAD"))
        print(_table(rows))
        print(f"{len(r.names())} tensors, {_human(total)}")
        if args.all:
            for n in r.names():
                print(f"tensor_name:  {n}")
                print(r.get_tensor(n))
        bad = [n for n, e in status.items() if e is not None]
        for n in bad:
            print(f"corrupt: {status[n]}", file=sys.stderr)
        return 1 if bad else 0


def _verify_file(path: str) -> list[str]:
    """Problems found in one checkpoint (and its meta file, if any)."""
    problems = []
    try:
        with CheckpointReader(path) as r:
            problems += [e for _, e in r.verify() if e is not None]
    except (DataLossError, NotFoundError) as e:  # listed as a checkpoint but not one: corrupt
        problems.append(str(e))
    meta = f"{path}.meta"
    if store.exists(meta) and not is_bundle(path):  # TF's .meta is a protobuf, not ours
        from ..train.meta_graph import read_meta_graph
        try:
            read_meta_graph(meta)
        except OpError as e:
            problems.append(str(e))
    return problems


def cmd_verify(args: argparse.Namespace) -> int:
    path = args.path
    if store.is_dir(path):
        from ..train.checkpoint_state import get_checkpoint_state
        st = get_checkpoint_state(path)
        if st is None:
            raise NotFoundError(f"{path}: no state file 'checkpoint' in this directory")
        paths = list(dict.fromkeys(st.all_model_checkpoint_paths + [st.model_checkpoint_path]))
    else:
        if not store.exists(path) and not is_bundle(path):
            raise NotFoundError(f"{path}: no such file")
        try:  # a file named on the command line that is not a checkpoint at all: exit 2
            CheckpointReader(path).close()
        except DataLossError:
            pass  # reported as CORRUPT below
        paths = [path]
    bad = 0
    for p in paths:
        if not store.exists(p) and not is_bundle(p):
            print(f"MISSING  {p} (listed in the state file)")
            bad += 1
            continue
        problems = _verify_file(p)
        print(f"{'ok' if not problems else 'CORRUPT':8} {p}")
        for msg in problems:
            print(f"    {msg}")
        bad += bool(problems)
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    # Raw: argparse would wrap the --version line (a long site-packages path) at the terminal's width.
    p = argparse.ArgumentParser(prog="varstore", description="Inspect, verify, summarize and convert "
                                                               "varstore checkpoints.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Which copy answers matters as much as its number (an editable checkout, a wheel in a venv).
    where = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--version", action="version", version=f"varstore {__version__} from {where} "
                                                          f"(Python {sys.version_info[0]}.{sys.version_info[1]})")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("inspect", help="list a checkpoint's tensors (name, dtype, shape, bytes, checksum)")
    i.add_argument("path")
    i.add_argument("--tensor", help="print one tensor's value")
    i.add_argument("--all", action="store_true", help="also print every tensor's value")
    i.add_argument("--names", action="store_true", help="print only the names")
    i.set_defaults(fn=cmd_inspect)
    v = sub.add_parser("verify", help="check every checksum (a file, or every checkpoint of a directory)")
    v.add_argument("path")
    v.set_defaults(fn=cmd_verify)
    s = sub.add_parser("summary", help="a table of a checkpoint's variables (shape, dtype, device, bytes, "
                                       "trainable) and totals per device")
    s.add_argument("path")
    s.set_defaults(fn=cmd_summary)
    c = sub.add_parser("convert", help="convert tensors between varstore checkpoints, safetensors, .npz, "
                                       "PyTorch state_dict files and TF bundles (format from the file or its "
                                       "extension; --to tf writes a TF bundle at the prefix DST)")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--map", action="append", metavar="OLD=NEW",
                   help="rename a tensor (repeatable); OLD ending in '/' renames a scope; empty NEW drops it")
    c.add_argument("--map-file", metavar="FILE", help="a file of OLD=NEW lines ('#' comments allowed)")
    c.add_argument("--from", dest="src_format", choices=FORMATS, help="the source format (default: detected)")
    c.add_argument("--to", dest="dst_format", choices=FORMATS,
                   help="the destination format (default: from the extension; none known: varstore)")
    c.add_argument("--force", action="store_true", help="replace DST if it exists")
    c.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    c.set_defaults(fn=cmd_convert)
    return p


def cmd_summary(args: argparse.Namespace) -> int:
    from .summary import _main_summary
    return _main_summary(args)


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import main_convert
    try:
        return main_convert(args)
    except OpError as e:
        if e.message.startswith("convert: "):  # main() already says "varstore convert: "
            raise type(e)(e.message[len("convert: "):]) from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except NotFoundError as e:
        print(f"varstore {args.command}: {e}", file=sys.stderr)
        return 2
    except DataLossError as e:
        print(f"varstore {args.command}: {e}", file=sys.stderr)
        return 2 if args.command == "inspect" else 1
    except OpError as e:
        print(f"varstore {args.command}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as e:  # a full disk, permissions: the error names the file; no traceback
        print(f"varstore {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
