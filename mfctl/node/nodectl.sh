# mfctl node control: find, report on and stop the processes of one job on this node.
# Sent inline by mfctl as: sh -c "$THIS_SCRIPT" nodectl ACTION JOB_ID [ARGS...]
#   pids   JOB_ID                      print "pid pgid stat etimes cmd" of each live process
#   status JOB_ID JOB_DIR LOG_DIR      the above, plus exit code, start time and last log lines
#   stop   JOB_ID GRACE [JOB_DIR]      TERM every process group, KILL after GRACE, report what is left;
#                                      with JOB_DIR, first leave run/stopped so a start of this job
#                                      still on its way (mfctl killed mid-launch) will not run
# Every process of a job carries MFCTL_JOB=<id> in its environment (set by the launch script and
# inherited by msrun, the scheduler and every worker), so this finds them even though each leads a
# process group of its own and msrun may be gone.
set -u
action=$1
job=$2

job_pids() {
    # One grep over every readable environ; zombies have an empty environ and drop out.
    grep -lsxzF "MFCTL_JOB=$job" /proc/[0-9]*/environ 2>/dev/null |
        sed -n 's#^/proc/\([0-9]*\)/environ$#\1#p' | grep -vx "$$"
}

describe() {
    # "proc PID PGID STAT ELAPSED ROLE RANK ARGS": ROLE/RANK from msrun's MS_ROLE/RANK_ID ("-" if unset).
    for pid in $(job_pids); do
        set -- $(ps -o pid=,pgid=,stat=,etimes= -p "$pid" 2>/dev/null)
        [ $# -eq 4 ] || continue
        case "$3" in Z*) continue ;; esac
        role=-; rank=-
        for kv in $(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -E '^(MS_ROLE|RANK_ID)='); do
            case "$kv" in MS_ROLE=*) role=${kv#MS_ROLE=} ;; RANK_ID=*) rank=${kv#RANK_ID=} ;; esac
        done
        echo "proc $1 $2 $3 $4 $role $rank $(ps -o args= -p "$pid" 2>/dev/null)"
    done
}

case "$action" in
pids)
    describe
    ;;
status)
    job_dir=$3
    log_dir=$4
    describe
    cd "$job_dir" 2>/dev/null || { echo "nojobdir"; exit 0; }
    [ -f run/exit_code ] && echo "exit_code $(cat run/exit_code)"
    [ -f run/started_at ] && echo "started_at $(cat run/started_at)"
    for f in "$log_dir"/worker_*.log "$log_dir"/scheduler.log; do
        [ -f "$f" ] || continue
        echo "log $(basename "$f") $(wc -c < "$f")"
        # The last step line and anything that says the worker failed, from the log's tail only.
        tail -c 262144 "$f" | grep -a -e 'step:\[' -e 'samples/s/p' -e 'Training Over' \
            -e 'Traceback' -e 'Error' -e 'exit with exception' | tail -n 6 |
            sed "s#^#line $(basename "$f") #"
    done
    ;;
stop)
    grace=${3:-10}
    if [ -n "${4:-}" ] && [ -d "$4" ]; then
        mkdir -p "$4/run" && echo "$job" > "$4/run/stopped"
    fi
    pids=$(job_pids)
    if [ -z "$pids" ]; then echo "left 0"; exit 0; fi
    groups=$(for p in $pids; do ps -o pgid= -p "$p" 2>/dev/null; done | tr -d ' ' | sort -u)
    for g in $groups; do kill -TERM "-$g" 2>/dev/null; done
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    waited=0
    while [ -n "$(job_pids)" ] && [ "$waited" -lt "$((grace * 5))" ]; do
        sleep 0.2
        waited=$((waited + 1))
    done
    pids=$(job_pids)
    if [ -n "$pids" ]; then
        echo "killed $(echo "$pids" | wc -w)"
        groups=$(for p in $pids; do ps -o pgid= -p "$p" 2>/dev/null; done | tr -d ' ' | sort -u)
        for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
        for p in $pids; do kill -KILL "$p" 2>/dev/null; done
        sleep 0.3
    fi
    echo "left $(job_pids | wc -w)"
    ;;
*)
    echo "nodectl: unknown action $action" >&2
    exit 2
    ;;
esac
