"""Stream new lines of a job's msrun logs on one node, resumable by byte offset.

Run on the node with the job's python (stdlib only), by mfctl over one SSH channel per node
(or locally): ``python -u logtail.py LOG_DIR [--all] [--offset NAME=BYTES ...] [--once]``.

Each output line is ``NAME<TAB>END_OFFSET<TAB>TEXT`` where END_OFFSET is the byte offset just
after TEXT in NAME; a client that reconnects passes the last offsets it saw and gets exactly the
lines after them, none lost and none twice. Without ``--all`` only the lines metrics need cross
the network (step and progress lines, errors, tracebacks, msrun's own lines); partial last lines
wait until their newline arrives. A ``#idle`` line is printed every few seconds so the client can
tell a quiet log from a dead connection.
"""

import argparse
import os
import re
import sys
import time

KEEP = re.compile(
    rb"step:\[|samples/s/p|Training Over|saving ckpt|global_batch_size|Traceback|Error|ERROR|CRITICAL|"
    rb"Fatal Python error|exit with exception|[Tt]ime ?out|[Tt]imed out|Worker process|kill all|"
    rb"^\s+File \"|^[A-Za-z_.]*(Error|Exception|Exit|Interrupt)\b|"
    # CANN failures (mfctl.metrics.cann.MARKS_PATTERN: this script imports nothing of mfctl): a code,
    # the lines of a device out-of-memory block.
    rb"E[A-Z0-9][0-9]{4}|M(?:emAlloc|alloc device memory|emory_Allocation)|Out of Memory"
)
NAME = re.compile(r"^(worker_\d+|scheduler)\.log$")


def split_tagged(raw):
    """One output line of this script -> (NAME, END_OFFSET, TEXT), or None for ``#idle`` and
    anything else that is not a tagged line. The one reader of the format ``main`` writes."""
    name, tab, rest = raw.partition("\t")
    pos, tab2, text = rest.partition("\t")
    if not tab or not tab2 or not pos.isdigit():
        return None
    return name, int(pos), text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("log_dir")
    parser.add_argument("--all", action="store_true", help="every line, not only the metric lines")
    parser.add_argument("--offset", action="append", default=[], help="NAME=BYTES to resume from")
    parser.add_argument("--extra", action="append", default=[],
                        help="NAME=PATH: another file to follow under NAME (msrun's own output)")
    parser.add_argument("--once", action="store_true", help="read what is there, then exit")
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    offsets = {}
    for item in args.offset:
        name, _, value = item.partition("=")
        offsets[name] = int(value)
    extras = {}
    for item in args.extra:
        name, _, path = item.partition("=")
        extras[name] = path
    out = sys.stdout.buffer
    last_emit = time.monotonic()
    while True:
        wrote = False
        try:
            files = {n: os.path.join(args.log_dir, n) for n in os.listdir(args.log_dir) if NAME.match(n)}
        except OSError:
            files = {}
        files.update(extras)
        for name in sorted(files):
            path = files[name]
            start = offsets.get(name, 0)
            try:
                size = os.path.getsize(path)
                if size < start:  # truncated or replaced: start over
                    start = 0
                if size == start:
                    continue
                with open(path, "rb") as handle:
                    handle.seek(start)
                    data = handle.read(min(size - start, 8 << 20))
            except OSError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue  # no complete line yet
            pos = start
            for raw in data[: end + 1].split(b"\n")[:-1]:
                pos += len(raw) + 1
                if args.all or KEEP.search(raw):
                    out.write(b"%s\t%d\t%s\n" % (name.encode(), pos, raw.rstrip(b"\r")))
                    wrote = True
            offsets[name] = start + end + 1
        now = time.monotonic()
        if wrote:
            out.flush()
            last_emit = now
        elif now - last_emit > 3:
            out.write(b"#idle\n")
            out.flush()
            last_emit = now
        if args.once:
            out.flush()
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
