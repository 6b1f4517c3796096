#!/bin/sh
# mfctl node launch script: job llama3-70b-8x8-render, node rank 6 (node7).
# mfctl starts it detached from the node's job dir:
#   nohup setsid sh bundle/launch.sh > run/launch.out 2>&1 < /dev/null &
# Every process it starts inherits MFCTL_JOB, which is how 'mfctl status' and 'mfctl stop'
# find msrun, the scheduler and each worker even though they lead process groups of their own.
# The job dir is the bundle's parent, wherever the node keeps it (mfctl-jobs/llama3-70b-8x8).
# In bash when the node has it, as a login shell: CANN's set_env.sh scripts are written for bash.
if [ -z "${BASH_VERSION:-}" ] && command -v bash >/dev/null 2>&1; then exec bash "$0" "$@"; fi
cd "$(dirname "$0")/.." || { echo "mfctl: cannot enter the job dir" >&2; exit 97; }
JOB_DIR=$(pwd -P)
export JOB_DIR
# Which job dir a process belongs to: how 'mfctl check' finds leftovers of an earlier run.
export MFCTL_JOB_DIR="$JOB_DIR"
export MFCTL_JOB=llama3-70b-8x8-render
mkdir -p run output/msrun_log 2>/dev/null
echo $$ > run/launch.pid
date +%s > run/started_at
# The CANN environment, sourced as a login shell would (a command over SSH reads no profile), before
# everything the job sets: the job's env wins over set_env.sh's values. set_env.sh scripts read
# unset variables: nounset is off while they run.
# ascend.set_env unset: the first toolkit script found, then ATB's when present.
mfctl_nounset=; case $- in *u*) mfctl_nounset=1; set +u ;; esac
for mfctl_env in /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/cann/set_env.sh; do
    if [ -f "$mfctl_env" ] && [ -r "$mfctl_env" ]; then . "$mfctl_env"; break; fi
done
if [ -f /usr/local/Ascend/nnal/atb/set_env.sh ] && [ -r /usr/local/Ascend/nnal/atb/set_env.sh ]; then . /usr/local/Ascend/nnal/atb/set_env.sh; fi
if [ -n "$mfctl_nounset" ]; then set -u; fi
# A set_env.sh may change directory: the job's paths are relative to its dir.
cd "$JOB_DIR" || { echo "mfctl: cannot enter the job dir again after set_env.sh" >&2; exit 97; }
msrun --worker_num 64 --local_worker_num 8 --master_addr node1 --master_port 8118 --node_rank 6 --log_dir output/msrun_log --join True --cluster_time_out 600 bundle/node/train.py --config bundle/config.yaml --train_dataset_dir /data/wiki4096/wiki4096.mindrecord --run_mode train --use_parallel True
rc=$?
echo "$rc" > "$JOB_DIR/run/exit_code"
exit "$rc"
