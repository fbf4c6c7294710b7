#!/bin/bash
# The GPU run behind face-d32 (export/README.md): `emocli train face` on KERAS_BACKEND=jax.
# Data: tar czf .gpu/faces.tgz -C DATA fer2013/train ferplus/labels.csv (FER2013 jpgs and FER+ votes);
# keras, namex and optree as wheels in .whl/ where the machine lacks them. Then: DEADLINE=490 bash docs/face-gpu-run.sh
#   phase 1, at once: three width-64 teachers and a direct width-32 net (FER+ votes, camera degradations);
#   phase 2, at once: two width-32 students and a width-48 one distilled from the teachers, sized to the time left.
# Knobs (env): DEADLINE (s), ET, ED (epochs), WT, WS, WW (widths), DATA_TGZ.
set -u
T0=$(date +%s)
DEADLINE=${DEADLINE:-490}
ET=${ET:-50}
ED=${ED:-90}
WT=${WT:-64}
WS=${WS:-32}
WW=${WW:-48}
ES_MAX=${ES_MAX:-60}
ES_MIN=${ES_MIN:-8}
el() { echo $(($(date +%s) - T0)); }
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 EMOCLI_CACHE=/tmp/emocli-cache XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 KERAS_BACKEND=${KERAS_BACKEND:-jax}
PY=${PY:-python3}
mkdir -p /tmp/facedata && tar xzf "${DATA_TGZ:-.gpu/faces.tgz}" -C /tmp/facedata || exit 1
DATA=/tmp/facedata/fer2013
CROWD=/tmp/facedata/ferplus/labels.csv
R=/tmp/faceruns
mkdir -p $R
nvidia-smi -L 2>/dev/null
$PY - <<'EOF' || export KERAS_BACKEND=torch
import keras, numpy as np
m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                      keras.layers.Dense(2, activation="softmax")])
m.compile("adam", "categorical_crossentropy")
m.fit(np.zeros((8, 8, 8, 1)), np.eye(2)[np.zeros(8, int)], verbose=0)
print("backend", keras.backend.backend(), keras.__version__, "ok")
EOF
echo "backend $KERAS_BACKEND at $(el)s"
$PY -c "from emocli.datasets import training_faces; print('faces', training_faces('$DATA').x.shape)" || exit 1

train() {
  local name=$1
  shift
  local left=$((DEADLINE - $(el)))
  timeout $left $PY -m emocli train face --data $DATA -o $R/$name --crowd-labels $CROWD --quiet \
    --batch-size 128 --lr 3e-3 "$@" >$R/$name.log 2>&1
  echo "$name rc=$? at $(el)s: $(cat $R/$name/state.json 2>/dev/null | tr -d ' \n')"
}

echo "phase 1 at $(el)s"
P1=$(el)
train d$WS --width $WS --seed 0 --epochs $ED &
train t${WT}a --width $WT --seed 1 --epochs $ET &
A=$!
train t${WT}b --width $WT --seed 2 --epochs $ET &
B=$!
train t${WT}c --width $WT --seed 3 --epochs $ET &
C=$!
(sleep 90 && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null && uptime) &
wait $A $B $C
P2=$(el)
# A student epoch costs about a teacher epoch (data-bound); leave 80 s for compiling and packing.
ES=$(((DEADLINE - P2 - 80) * ET * 85 / 100 / (P2 - P1)))
[ $ES -gt $ES_MAX ] && ES=$ES_MAX
echo "phase 2 at ${P2}s: students of $ES epochs"
TEACHERS=""
for t in a b c; do
  [ -f $R/t$WT$t/model.keras ] && TEACHERS="$TEACHERS --teacher $R/t$WT$t/model.keras"
done
if [ $ES -ge $ES_MIN ] && [ -n "$TEACHERS" ]; then
  train s${WS}a --width $WS --seed 4 --epochs $ES $TEACHERS --teacher-weight 0.7 --temperature 2 &
  train s${WS}b --width $WS --seed 5 --epochs $ES $TEACHERS --teacher-weight 0.8 --temperature 1 &
  train s${WW}b --width $WW --seed 6 --epochs $ES $TEACHERS --teacher-weight 0.8 --temperature 1 &
fi
wait
echo "packing at $(el)s"
for r in d$WS s${WS}a s${WS}b s${WW}b; do
  [ -f $R/$r/model.keras ] && cp $R/$r/model.keras $OUT/$r.keras
done
$PY - "$R" "$OUT" $WT <<'EOF'
import sys, pathlib, numpy as np, keras
runs, out, width = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
for t in "abc":
    p = runs / f"t{width}{t}" / "model.keras"
    if p.is_file():
        w = keras.models.load_model(p, compile=False).get_weights()
        np.savez(out / f"t{width}{t}-fp16.npz", *[a.astype(np.float16) for a in w])
EOF
tar czf $OUT/logs.tgz -C $R $(cd $R && ls -d *.log */history.csv */config.json */state.json */metrics.json 2>/dev/null)
ls -la $OUT
echo "done at $(el)s"
