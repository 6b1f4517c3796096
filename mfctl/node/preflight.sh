# mfctl preflight: one round trip answers every check for one node, as "key value" lines.
# Sent inline as: sh -c "$THIS_SCRIPT" preflight PYTHON DATASET WORKDIR MASTER_PORT IS_MASTER JOB_NAME SETUP JOB_DIR [MF_HOME [SET_ENV...]]
set -u
python=$1
dataset=$2
workdir=$3
port=$4
is_master=$5
name=$6
setup=${7:-}
job_dir=${8:-}
mf_home=${9:-}
if [ -n "$setup" ]; then
    eval "$setup" >/dev/null 2>&1 || echo "setup_failed 1"
fi
if command -v "$python" >/dev/null 2>&1; then
    pydir=$(dirname "$(command -v "$python")")
    # Versions from the dist-info folder names next to that python: no interpreter start-up, which
    # is most of a check's cost (and slow on shared filesystems). Python itself only if not found.
    echo "python $("$python" -V 2>&1 | awk '{print $2}')"
    found=0
    for pkg in mindspore mindformers; do
        d=$(ls -d "$pydir"/../lib/python3*/site-packages/"$pkg"-*.dist-info 2>/dev/null | head -n 1)
        if [ -n "$d" ]; then
            v=${d##*/"$pkg"-}
            echo "$pkg ${v%.dist-info}"
            found=$((found + 1))
        fi
    done
    if [ "$found" -lt 2 ]; then
        "$python" - <<'PY' 2>/dev/null || echo "python_broken 1"
import importlib.metadata as md
for pkg in ("mindspore", "mindformers"):
    try:
        print(pkg, md.version(pkg))
    except md.PackageNotFoundError:
        print(pkg, "MISSING")
PY
    fi
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
# Launcher 'mindformers': the checkout (relative = under the home, as the launch script takes it)
# has MindFormers' launcher and entry, and its version (read, not imported) is the installed one.
if [ -n "$mf_home" ]; then
    case $mf_home in /*) h=$mf_home ;; *) h=$HOME/$mf_home ;; esac
    if [ -d "$h" ]; then
        missing=
        for f in scripts/msrun_launcher.sh run_mindformer.py; do
            [ -f "$h/$f" ] || missing="$missing $f"
        done
        [ -n "$missing" ] && echo "mf_home_missing$missing"
        v=$(sed -n "s/^__version__ *= *[\"']\([^\"']*\)[\"'].*/\1/p" "$h/mindformers/__init__.py" 2>/dev/null | head -n 1)
        echo "mf_home_version ${v:-unknown}"
    else
        echo "mf_home missing"
    fi
fi
if command -v npu-smi >/dev/null 2>&1; then
    echo "npu $(npu-smi info -l 2>/dev/null | grep -c 'NPU ID')"
fi
# ascend.set_env (arguments 10 on): the CANN environment scripts the launch script will source,
# taken as it takes them (relative or ~/ = under the home). The first one missing, if any.
if [ $# -gt 9 ]; then
    shift 9
    for f in "$@"; do
        case $f in /*) p=$f ;; "~/"*) p=$HOME/${f#"~/"} ;; *) p=$HOME/$f ;; esac
        if [ ! -f "$p" ] || [ ! -r "$p" ]; then echo "set_env_missing $f"; break; fi
    done
fi
echo "done 1"
