"""The run dir as one file that travels to another machine, and back; or its small result files alone
(the format: rundir.pack).

    python -m study.pack <run_dir> <file.tar.gz|file.tar.zst> [--logs]   # everything resume= needs
    python -m study.pack --unpack <file.tar.gz|file.tar.zst> <dir>       # <dir> becomes the run dir
    python -m study.pack --small <run_dir> <dir>                         # the result files (bench/results/paper/<exp>)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from errors import UsageError
from rundir.pack import pack, small, unpack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study.pack", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a run dir (or, with --unpack, an archive)")
    parser.add_argument("target", type=Path, help="the archive (or, with --unpack and --small, a new folder)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--unpack", action="store_true", help="extract an archive into a new run dir")
    mode.add_argument("--small", action="store_true", help="copy only the small result files")
    parser.add_argument("--logs", action="store_true", help="keep Tune's TensorBoard event files")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.unpack:
            print(f"{unpack(args.source, args.target)} files unpacked into {args.target}; continue the study with: "
                  f"{sys.executable} -m study.launch resume={args.target.resolve()}")
        elif args.small:
            print(f"{args.target}: {', '.join(small(args.source.resolve(), args.target))}")
        else:
            print(f"{args.target}: {pack(args.source.resolve(), args.target, args.logs)} files of {args.source}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
