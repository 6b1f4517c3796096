"""Judge a Slurm job's preflight on its batch host, with the controller's own table.

Each Slurm task writes its node's facts (``node/preflight.sh``'s output) to
``<node dir>/run/preflight.txt``; then the batch script runs this with the node's python:

    python preflight_judge.py JUDGE_DIR CONTEXT_JSON NODE_DIR...

``JUDGE_DIR`` holds the copies of ``mfctl/cluster/preflight.py`` and ``npu.py`` (standard library
only) that ``mfctl launch`` put in the bundle, as a package ``mfctl.cluster`` of their own: the
nodes need no mfctl install, and the rows are the very ones ``mfctl check`` runs. (They are
imported by name at run time, from that directory: this file stays importable without them.)

For every node that fails it writes the reasons to ``run/preflight_failed`` and exit code 3 to
``run/exit_code``, prints each problem and warning naming the node, and exits 3 if any node
failed (0 otherwise; 2 if it could not read its input).
"""

from __future__ import annotations

import importlib
import os
import sys


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: preflight_judge.py JUDGE_DIR CONTEXT_JSON NODE_DIR...", file=sys.stderr)
        return 2
    judge_dir, context_path, node_dirs = argv[0], argv[1], argv[2:]
    sys.path.insert(0, judge_dir)
    table = importlib.import_module("mfctl.cluster.preflight")
    ctx = table.Context.from_json(_read(context_path))
    facts = []
    for rank, d in enumerate(node_dirs):
        run = os.path.join(d, "run")
        host = _read(os.path.join(run, "node_name")).strip() or f"node{rank}"
        text = _read(os.path.join(run, "preflight.txt"))
        if "\ndone 1" not in "\n" + text:
            text += "\nerror the node's preflight did not finish (see run/preflight.txt)"
        facts.append(table.read_facts(host, rank, text))
    failed = 0
    for d, verdict in zip(node_dirs, table.judge(facts, ctx)):
        for w in verdict.warnings:
            print(f"mfctl: preflight warning on {verdict.host}: {w}")
        if verdict.ok:
            continue
        failed += 1
        for p in verdict.problems:
            print(f"mfctl: preflight failed on {verdict.host}: {p}", file=sys.stderr)
        run = os.path.join(d, "run")
        with open(os.path.join(run, "preflight_failed"), "w", encoding="utf-8") as f:
            f.write(" | ".join(verdict.problems).replace("\n", " ") + "\n")
        with open(os.path.join(run, "exit_code"), "w", encoding="utf-8") as f:
            f.write("3\n")
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
