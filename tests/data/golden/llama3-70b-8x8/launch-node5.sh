#!/bin/sh
# mfctl node launch script: job llama3-70b-8x8-render, node rank 5 (node6).
# mfctl starts it detached from the node's job dir:
#   nohup setsid sh bundle/launch.sh > run/launch.out 2>&1 < /dev/null &
# Every process it starts inherits MFCTL_JOB, which is how 'mfctl status' and 'mfctl stop'
# find msrun, the scheduler and each worker even though they lead process groups of their own.
# The job dir is the bundle's parent, wherever the node keeps it (mfctl-jobs/llama3-70b-8x8).
cd "$(dirname "$0")/.." || { echo "mfctl: cannot enter the job dir" >&2; exit 97; }
JOB_DIR=$(pwd -P)
export JOB_DIR
# Which job dir a process belongs to: how 'mfctl check' finds leftovers of an earlier run.
export MFCTL_JOB_DIR="$JOB_DIR"
export MFCTL_JOB=llama3-70b-8x8-render
mkdir -p run output/msrun_log 2>/dev/null
echo $$ > run/launch.pid
date +%s > run/started_at
msrun --worker_num 64 --local_worker_num 8 --master_addr node1 --master_port 8118 --node_rank 5 --log_dir output/msrun_log --join True --cluster_time_out 600 bundle/node/train.py --config bundle/config.yaml --train_dataset_dir /data/wiki4096/wiki4096.mindrecord --run_mode train --use_parallel True
rc=$?
echo "$rc" > "$JOB_DIR/run/exit_code"
exit "$rc"
