# mfctl plan --dryrun: MindSpore's DryRun for one rank per pipeline stage, one after the other.
# Sent inline (in bash when the node has it: CANN's set_env.sh scripts are written for bash) as:
#   sh -c "$THIS_SCRIPT" dryrun PYTHON SETUP DIR RANK_SIZE "STAGE:RANK ..." SET_ENV ENTRY [ARGS...]
# SET_ENV: "-" sources the first CANN toolkit set_env.sh found and ATB's (as the launch script does
# when ascend.set_env is unset), "" nothing, else the job's ascend.set_env paths, newline-separated
# (relative or ~/ = under the home). Prints "nocann" when no CANN is found after that (DryRun needs
# MindSpore for Ascend), "set_env_missing PATH" for a missing script, else per stage
# "stage S rank R rc N", MindSpore's memory statistic lines prefixed "mem S " and the log's last
# lines prefixed "tail S ".
set -u
python=$1
setup=$2
dir=$3
size=$4
pairs=$5
set_env=$6
shift 6
if [ -n "$setup" ]; then
    eval "$setup" >/dev/null 2>&1 || { echo "setup_failed"; exit 0; }
fi
set +u
if [ "$set_env" = "-" ]; then
    for f in /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/cann/set_env.sh; do
        if [ -f "$f" ] && [ -r "$f" ]; then . "$f" >/dev/null 2>&1; break; fi
    done
    f=/usr/local/Ascend/nnal/atb/set_env.sh
    if [ -f "$f" ] && [ -r "$f" ]; then . "$f" >/dev/null 2>&1; fi
elif [ -n "$set_env" ]; then
    old_ifs=$IFS
    IFS='
'
    for f in $set_env; do
        case $f in /*) p=$f ;; "~/"*) p=$HOME/${f#"~/"} ;; *) p=$HOME/$f ;; esac
        if [ ! -f "$p" ] || [ ! -r "$p" ]; then echo "set_env_missing $f"; exit 0; fi
        . "$p" >/dev/null 2>&1
    done
    IFS=$old_ifs
fi
set -u
cann=""
for d in "${ASCEND_HOME_PATH:-}" "${ASCEND_TOOLKIT_HOME:-}" /usr/local/Ascend/ascend-toolkit/latest \
        /usr/local/Ascend/cann; do
    if [ -n "$d" ] && [ -d "$d" ]; then cann=$d; break; fi
done
if [ -z "$cann" ]; then echo "nocann"; exit 0; fi
cd "$dir" || { echo "nodir"; exit 0; }
mkdir -p run
for pair in $pairs; do
    stage=${pair%%:*}
    rank=${pair#*:}
    log="run/dryrun-stage$stage.log"
    MS_SIMULATION_LEVEL=1 MS_MEMORY_STATISTIC=1 RANK_SIZE=$size RANK_ID=$rank "$python" "$@" >"$log" 2>&1
    echo "stage $stage rank $rank rc $?"
    grep -E "peak memory usage|Total (Static|Dynamic) [Mm]emory size|Device (HBM|MOC) memory size" "$log" \
        | tail -n 8 | sed "s/^/mem $stage /"
    tail -n 2 "$log" | sed "s/^/tail $stage /"
done
echo "done"
