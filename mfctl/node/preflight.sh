# mfctl preflight: one round trip answers every check for one node, as "key value" lines.
# Sent inline as: sh -c "$THIS_SCRIPT" preflight PYTHON DATASET WORKDIR MASTER_PORT IS_MASTER JOB_NAME SETUP JOB_DIR
#     [MF_HOME [ASCEND DEVICES [SET_ENV_GIVEN [SET_ENV...]]]]
# ASCEND=1: also the NPU facts (npu-smi, hccn_tool for DEVICES "0,1,..", versions). SET_ENV_GIVEN=1:
# ascend.set_env lists the CANN environment scripts SET_ENV... (0: unset, the default locations).
# A tool's raw output comes back as "@name line" lines: mfctl/cluster/preflight.py reads them.
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
ascend=${10:-0}
devices=${11:-}
set_env_given=${12:-0}
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
job_pids=
jd=$(cd "$job_dir" 2>/dev/null && pwd -P)
if [ -n "$jd" ]; then
    for pid in $(ps -o pid= -u "$(id -u)"); do
        if grep -qsxzF "MFCTL_JOB_DIR=$jd" "/proc/$pid/environ" 2>/dev/null; then
            stale=$((stale + 1))
            job_pids="$job_pids $pid"
        fi
    done
fi
echo "stale $stale"
echo "job_pids$job_pids"
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
# ascend.set_env: the CANN environment scripts the launch script will source, taken as it takes
# them (relative or ~/ = under the home); the first one missing, if any. Unset: the defaults.
scripts=
if [ "$set_env_given" = 1 ] && [ $# -gt 12 ]; then
    shift 12
    missing=
    for f in "$@"; do
        case $f in /*) p=$f ;; "~/"*) p=$HOME/${f#"~/"} ;; *) p=$HOME/$f ;; esac
        if [ ! -f "$p" ] || [ ! -r "$p" ]; then
            [ -z "$missing" ] && echo "set_env_missing $f" && missing=1
        else
            scripts="$scripts
$p"
        fi
    done
elif [ "$set_env_given" != 1 ]; then
    for f in /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/cann/set_env.sh; do
        if [ -f "$f" ]; then scripts=$f; break; fi
    done
    [ -f /usr/local/Ascend/nnal/atb/set_env.sh ] && scripts="$scripts
/usr/local/Ascend/nnal/atb/set_env.sh"
fi
if [ "$ascend" = 1 ]; then
    smi=$(command -v npu-smi 2>/dev/null)
    for c in /usr/local/sbin/npu-smi /usr/local/bin/npu-smi; do
        if [ -z "$smi" ] && [ -x "$c" ]; then smi=$c; fi
    done
    if [ -n "$smi" ]; then
        echo "npu_smi $smi"
        out=$("$smi" info 2>&1)
        printf '%s\n' "$out" | sed 's/^/@npu_info /'
        # The health detail (error code and information) of every NPU whose first row is not OK.
        for n in $(printf '%s\n' "$out" | awk -F'|' 'NF > 3 && $2 ~ /^ *[0-9]+ +[^ ]*[A-Za-z]/ && $3 ~ /[A-Za-z]/ && $3 !~ /^ *OK *$/ {split($2, a, " "); print a[1]}' | sort -un | head -n 16); do
            "$smi" info -t health -i "$n" -c 0 2>&1 | sed "s/^/@health.$n /"
        done
    else
        echo "npu_smi MISSING"
    fi
    hccn=$(command -v hccn_tool 2>/dev/null)
    if [ -z "$hccn" ] && [ -x /usr/local/Ascend/driver/tools/hccn_tool ]; then hccn=/usr/local/Ascend/driver/tools/hccn_tool; fi
    if [ -n "$hccn" ]; then
        echo "hccn_tool $hccn"
        for d in $(printf '%s' "$devices" | tr ',' ' '); do
            case $d in ''|*[!0-9]*) continue ;; esac
            for what in link net_health ip; do
                "$hccn" -i "$d" -"$what" -g 2>&1 | sed "s/^/@$what.$d /"
            done
        done
    else
        echo "hccn_tool MISSING"
    fi
    sed 's/^/@driver.info /' /usr/local/Ascend/driver/version.info 2>/dev/null
    sed 's/^/@firmware.info /' /usr/local/Ascend/firmware/version.info 2>/dev/null
    # The CANN toolkit of the environment the workers get: the setup line's, then the scripts'.
    sh_=sh
    command -v bash >/dev/null 2>&1 && sh_=bash
    home=$(printf '%s\n' "$scripts" | "$sh_" -c 'while IFS= read -r f; do [ -f "$f" ] && . "$f" >/dev/null 2>&1 </dev/null; done; echo "${ASCEND_TOOLKIT_HOME:-${ASCEND_HOME_PATH:-}}"' 2>/dev/null)
    if [ -n "$home" ]; then
        for i in "$home"/ascend_toolkit_install.info "$home"/*/ascend_toolkit_install.info; do
            if [ -f "$i" ]; then sed 's/^/@cann.info /' "$i"; break; fi
        done
    fi
fi
echo "done 1"
