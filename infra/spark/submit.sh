#!/usr/bin/env bash
# Submit one Spark job of spark_jobs/ with spark-submit, shipping the serendipity and spark_jobs packages
# as a zip (--py-files), so executors need only the dependencies installed, not this repository.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python_bin="${PYSPARK_DRIVER_PYTHON:-${PYSPARK_PYTHON:-python3}}"

usage() {
  cat <<USAGE
usage: $(basename "$0") JOB [JOB ARGS...]        e.g. $(basename "$0") validate --config configs/demo.yaml

Runs spark-submit --master \$SPARK_MASTER --py-files <serendipity + spark_jobs zip> spark_jobs/JOB.py ARGS.
JOB is one of: $(jobs_available | tr '\n' ' ')
Environment:
  SPARK_MASTER       required: local[*], yarn, k8s://https://HOST:PORT, spark://HOST:PORT
  SPARK_SUBMIT       spark-submit to run (default: spark-submit on PATH)
  SPARK_SUBMIT_ARGS  extra spark-submit options, split on spaces (e.g. "--deploy-mode client --num-executors 4")
  PYSPARK_PYTHON     Python of the executors (must have the project's dependencies)
USAGE
}

jobs_available() {  # the job modules of spark_jobs/, one a line: those with a main (the stage table's Spark stages)
  local module
  for module in "$REPO_ROOT"/spark_jobs/*.py; do
    if grep -q '^def main(' "$module"; then basename "$module" .py; fi
  done
}

if [[ $# -lt 1 ]]; then
  usage >&2
  exit 2
fi
if [[ "$1" == "-h" || "$1" == "--help" ]]; then
  usage
  exit 0
fi

job="$1"
shift
job_file="$REPO_ROOT/spark_jobs/$job.py"
if ! grep -qx -- "$job" <<<"$(jobs_available)"; then
  echo "error: unknown Spark job '$job'" >&2
  usage >&2
  exit 2
fi
if [[ -z "${SPARK_MASTER:-}" ]]; then
  echo "error: SPARK_MASTER is not set (e.g. SPARK_MASTER='local[*]' or yarn)" >&2
  exit 2
fi

build_dir="$(mktemp -d "${TMPDIR:-/tmp}/serendipity-submit.XXXXXX")"
trap 'rm -rf "$build_dir"' EXIT
package_zip="$build_dir/serendipity-packages.zip"
(cd "$REPO_ROOT" && "$python_bin" -m zipfile -c "$package_zip" serendipity spark_jobs)

read -r -a extra_args <<<"${SPARK_SUBMIT_ARGS:-}"
exec_args=(
  "${SPARK_SUBMIT:-spark-submit}"
  --master "$SPARK_MASTER"
  --py-files "$package_zip"
  "${extra_args[@]}"
  "$job_file"
  "$@"
)
"${exec_args[@]}"
