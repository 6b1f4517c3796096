# mfctl preflight: one round trip answers every check for one node, as "key value" lines.
# Sent inline as: sh -c "$THIS_SCRIPT" preflight PYTHON DATASET WORKDIR MASTER_PORT IS_MASTER JOB_NAME SETUP JOB_DIR
set -u
python=$1
dataset=$2
workdir=$3
port=$4
is_master=$5
name=$6
setup=${7:-}
job_dir=${8:-}
if [ -n "$setup" ]; then
    eval "$setup" >/dev/null 2>&1 || echo "setup_failed 1"
fi
if command -v "$python" >/dev/null 2>&1; then
    # Package metadata only: importing mindspore would cost seconds and half a GB per node.
    "$python" - <<'PY' 2>/dev/null || echo "python_broken 1"
import importlib.metadata as md, platform
print("python", platform.python_version())
for pkg in ("mindspore", "mindformers"):
    try:
        print(pkg, md.version(pkg))
    except md.PackageNotFoundError:
        print(pkg, "MISSING")
PY
    pydir=$(dirname "$(command -v "$python")")
    if [ -x "$pydir/msrun" ]; then echo "msrun $pydir/msrun"
    elif command -v msrun >/dev/null 2>&1; then echo "msrun $(command -v msrun)"
    else echo "msrun MISSING"; fi
else
    echo "python MISSING"
fi
if [ -e "$dataset" ]; then
    if [ -d "$dataset" ]; then
        if [ -r "$dataset" ] && [ -n "$(ls -A "$dataset" 2>/dev/null)" ]; then echo "dataset ok"; else echo "dataset unreadable"; fi
    elif [ -r "$dataset" ]; then
        bad=0
        for f in "$dataset" "$dataset.db"; do [ -e "$f" ] && [ ! -r "$f" ] && bad=1; done
        if [ "$bad" = 0 ]; then echo "dataset ok"; else echo "dataset unreadable"; fi
    else echo "dataset unreadable"; fi
else
    echo "dataset missing"
fi
# Free space where the job will be written: the work dir, or its nearest existing parent (the
# check itself creates nothing).
d=$workdir
while [ ! -d "$d" ] && [ "$d" != "/" ] && [ "$d" != "." ]; do d=$(dirname "$d"); done
echo "disk_free_kb $(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"
if [ "$is_master" = 1 ]; then
    hexport=$(printf '%04X' "$port")
    if awk -v p="$hexport" 'FNR>1 {split($2,a,":"); if (a[length(a)]==p && $4=="0A") f=1} END {exit !f}' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null; then echo "port busy"; else echo "port free"; fi
fi
# Leftovers of an earlier run: this user's processes started in this job's dir (their environment
# says MFCTL_JOB_DIR=<the job dir>); other users' processes are theirs, not ours.
stale=0
jd=$(cd "$job_dir" 2>/dev/null && pwd -P)
if [ -n "$jd" ]; then
    for pid in $(ps -o pid= -u "$(id -u)"); do
        if grep -qsxzF "MFCTL_JOB_DIR=$jd" "/proc/$pid/environ" 2>/dev/null; then stale=$((stale + 1)); fi
    done
fi
echo "stale $stale"
if command -v npu-smi >/dev/null 2>&1; then
    echo "npu $(npu-smi info -l 2>/dev/null | grep -c 'NPU ID')"
fi
echo "done 1"
