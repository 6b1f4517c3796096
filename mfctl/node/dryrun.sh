# mfctl plan --dryrun: MindSpore's DryRun for one rank per pipeline stage, one after the other.
# Sent inline as: sh -c "$THIS_SCRIPT" dryrun PYTHON SETUP DIR RANK_SIZE "STAGE:RANK ..." ENTRY [ARGS...]
# Prints "nocann" when the node has no CANN (DryRun needs MindSpore for Ascend), else per stage
# "stage S rank R rc N" and MindSpore's memory statistic lines prefixed "mem S ".
set -u
python=$1
setup=$2
dir=$3
size=$4
pairs=$5
shift 5
if [ -n "$setup" ]; then
    eval "$setup" >/dev/null 2>&1 || { echo "setup_failed"; exit 0; }
fi
cann=""
for d in "${ASCEND_HOME_PATH:-}" /usr/local/Ascend/ascend-toolkit/latest /usr/local/Ascend/cann; do
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
