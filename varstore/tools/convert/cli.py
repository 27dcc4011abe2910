"""``varstore convert SRC DST``: the command line's glue (argparse lives in ``varstore.tools.cli``)."""
from __future__ import annotations

import sys
from typing import Any

from ...progress import format_bytes
from .api import convert
from .names import parse_name_map, read_name_map_file


def main_convert(args: Any) -> int:
    """``varstore convert`` (called by the command line)."""
    name_map: dict[str, str] = {}
    if args.map_file:
        name_map.update(read_name_map_file(args.map_file))
    if args.map:
        for k, v in parse_name_map(args.map).items():
            name_map[k] = v
    r = convert(args.src, args.dst, name_map or None, src_format=args.src_format, dst_format=args.dst_format,
                progress=False if args.no_progress else None, overwrite=args.force)
    msg = (f"{r.src} ({r.src_format}) -> {r.dst} ({r.dst_format}): {r.tensors} tensors, "
           f"{format_bytes(r.nbytes)} in {r.seconds:.2f} s")
    if r.dropped:
        msg += f"; dropped {len(r.dropped)}"
    sys.stdout.write(msg + "\n")
    return 0

