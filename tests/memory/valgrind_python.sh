#!/usr/bin/env bash
# Runs the binding's leak probe under valgrind and fails if any definitely-lost block was
# allocated inside libtms (a string the binding forgot to free, or one the library leaked).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-$(python3 -c "import sys; print(sys.executable)")}
log=target/valgrind-python.log
PYTHONMALLOC=malloc TMS_LIB="$PWD/target/release/libtms.so" valgrind --leak-check=full \
  --show-leak-kinds=definite --num-callers=40 --log-file="$log" \
  "$python" tests/memory/leak_probe.py "${1:-40}"
# Each loss record is a block of lines; keep those that mention libtms or a tms_ function.
leaks=$(awk '/definitely lost in loss record/{rec=$0; keep=0; next} rec!=""{rec=rec"\n"$0; if ($0 ~ /libtms|tms_/) keep=1} /^==[0-9]+== $/{if (keep) print rec; rec=""; keep=0}' "$log")
summary=$(grep -E "definitely lost:" "$log" | tail -1 || true)
echo "valgrind: $summary"
if [ -n "$leaks" ]; then
  echo "leaks from libtms:"; echo -e "$leaks"
  echo "memory: 0 passed, 1 failed"
  exit 1
fi
echo "memory: 1 passed, 0 failed"
