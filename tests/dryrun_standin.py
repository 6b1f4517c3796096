"""A stand-in for MindSpore's DryRun on nodes without CANN: it prints recorded real DryRun output.

``standin_setup(world, pp)`` is a job ``setup`` line: it points ASCEND_HOME_PATH at an existing
directory (so ``mfctl plan --dryrun`` finds "CANN") and defines the shell function
``dryrun_python``, which the job uses as its ``python``. Called as mfctl's DryRun calls python
(``dryrun_python bundle/node/train.py --config bundle/config.yaml ...`` with MS_SIMULATION_LEVEL,
RANK_SIZE and RANK_ID set), it checks those and that the config was pushed, then prints the
recorded ``Actual peak memory usage (with fragments)`` line of stage RANK_ID / (RANK_SIZE / pp)
from tests/data/dryrun/mindformers-v1.5.0-pipeline-balance-stages.txt.
"""

from __future__ import annotations

import shlex
from pathlib import Path

STAGES_FILE = Path(__file__).resolve().parent / "data" / "dryrun" / "mindformers-v1.5.0-pipeline-balance-stages.txt"
STANDIN_PYTHON = "dryrun_python"


def recorded_peaks() -> list[str]:
    """The recorded per-stage lines, as the DryRun log printed them (the grep prefix removed)."""
    lines = [line for line in STAGES_FILE.read_text().splitlines() if line and not line.startswith("#")]
    return [line.split(":", 2)[2] for line in lines]


def recorded_mib(stage: int) -> int:
    return int(recorded_peaks()[stage].rsplit(" ", 1)[1].rstrip("M"))


def standin_setup(world: int, pp: int, cann: bool = True) -> str:
    """``cann``: also point ASCEND_HOME_PATH at a directory (else a set_env.sh must)."""
    per = world // pp
    cases = " ".join(f"{s * per}) printf '%s\\n' {shlex.quote(line)};;"
                     for s, line in enumerate(recorded_peaks()[:pp]))
    return ("export ASCEND_HOME_PATH=/; " if cann else "") + (
        f"{STANDIN_PYTHON}() {{ "
        '[ "${MS_SIMULATION_LEVEL:-}" = 1 ] || { echo "not a DryRun"; return 3; }; '
        f'[ "${{RANK_SIZE:-}}" = {world} ] || {{ echo "RANK_SIZE $RANK_SIZE"; return 4; }}; '
        '[ "$2" = --config ] && [ -f "$3" ] || { echo "no config $3"; return 5; }; '
        'echo "Device MOC memory size: 62432M"; '
        f'case "$RANK_ID" in {cases} *) echo "rank $RANK_ID is not a stage head"; return 6;; esac; }}'
    )
