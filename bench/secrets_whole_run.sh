#!/usr/bin/env bash
# A whole DAG run (make demo's config, about 2.5 min on 2 cores) with secrets planted in the tracking URI
# (a loopback MLflow server) and in an input URI (user:password@ on a loopback HTTP server); then
# every file it wrote (run folder, MLflow store and artifacts, Prefect home) and all it printed are
# grepped for them. Issue 31; result in bench/RESULTS.md.
set -u
cd "$(dirname "$0")/.."; ROOT=$(pwd)
W=$(mktemp -d); mkdir -p $W/http $W/mlflow
cp data/sample/corpus/news.jsonl $W/http/
T=TRACKSECRET9f3a; I=INPUTSECRET7c1d
HP=18731; MP=18732
(cd $W/http && "$ROOT"/.venv/bin/python -m http.server $HP --bind 127.0.0.1 > $W/http.log 2>&1) & HTTP_PID=$!
.venv/bin/mlflow server --backend-store-uri sqlite:///$W/mlflow/mlflow.db --default-artifact-root $W/mlflow/artifacts \
  --host 127.0.0.1 --port $MP > $W/mlflow.log 2>&1 & ML_PID=$!
sleep 20
export PREFECT_HOME=$W/prefect TOKENIZERS_PARALLELISM=false
start=$(date +%s)
.venv/bin/babelforge run --config configs/demo.yaml --run-name secretrun --set output_dir=$W/runs \
  --set "registry.tracking_uri=http://bf:$T@127.0.0.1:$MP" \
  --set "corpus.ingest.inputs=[\"data/sample/corpus/*\", \"http://reader:$I@127.0.0.1:$HP/news.jsonl\"]" \
  > $W/stdout.log 2>&1
echo "rc=$? seconds=$(( $(date +%s) - start ))"
kill $HTTP_PID $ML_PID 2>/dev/null; sleep 3
echo "files written: $(find $W/runs $W/mlflow $W/prefect -type f | wc -l)"
echo "hits of the tracking secret: $(grep -rl $T $W/runs $W/mlflow $W/prefect $W/stdout.log 2>/dev/null | wc -l)"
echo "hits of the input secret: $(grep -rl $I $W/runs $W/mlflow $W/prefect $W/stdout.log 2>/dev/null | wc -l)"
grep -rl "$T\|$I" $W/runs $W/mlflow $W/prefect $W/stdout.log 2>/dev/null | head
echo "redacted forms present: $(grep -rl 'reader:\*\*\*\|\*\*\*@127.0.0.1' $W/runs $W/stdout.log 2>/dev/null | wc -l) files"
tail -5 $W/stdout.log
