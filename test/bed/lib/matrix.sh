# shellcheck shell=bash
# matrix.sh: the e2e tests on one bed, and the runtime matrix: for every runtime, a fresh bed, the
# e2e tests and critest directly and through crishim, tear-down, one row of a table. Sourced by
# bed.sh.
#
#   bed.sh e2e                   go test -tags e2e on the running bed (crishim up), log $BED_DIR/e2e.log
#   bed.sh matrix [RUNTIME...]   default: containerd1 containerd2 crio

# bed_e2e: the Go e2e tests against this bed. Prints every skipped test with its reason and writes
# "passed/failed/skipped" (top-level tests) to $BED_DIR/e2e.summary.
bed_e2e() {
  require_root
  alive "$PID_CRISHIM" || die "crishim is not running on this bed: run '$0 up' and '$0 crishim-up' first"
  local log=$BED_DIR/e2e.log rc
  log "e2e on $RUNTIME: go test -tags e2e ${BED_E2E_FLAGS:--count=1 -v -timeout 20m} ./test/e2e/..."
  set +e
  (
    cd "$REPO_ROOT"
    eval "$(bed_env)"
    # shellcheck disable=SC2086
    ${GO:-go} test -tags e2e ${BED_E2E_FLAGS:--count=1 -v -timeout 20m} ./test/e2e/...
  ) 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  e2e_summary "$log" >"$BED_DIR/e2e.summary"
  echo "e2e on $RUNTIME: $(cat "$BED_DIR/e2e.summary") (passed/failed/skipped top-level tests), rc=$rc, log $log"
  e2e_skips "$log"
  return "$rc"
}

# e2e_summary LOG: passed/failed/skipped top-level tests of a `go test -v` log
e2e_summary() {
  awk '/^--- PASS/ {p++} /^--- FAIL/ {f++} /^--- SKIP/ {s++} END {printf "%d/%d/%d\n", p, f, s}' "$1"
}

# e2e_skips LOG: every skipped test or subtest with the message it skipped with (the last log line
# before its --- SKIP)
e2e_skips() {
  awk '
    /^=== (RUN|CONT|NAME|PAUSE) / { cur = $3 }
    /^ +[A-Za-z0-9_]+\.go:[0-9]+: / { msg = $0; sub(/^ +/, "", msg); last[cur] = msg }
    /^ *--- SKIP: / { printf "  skipped: %s: %s\n", $3, last[$3]; n++ }
    END { if (n == 0) print "  skipped: none" }
  ' "$1"
}

MATRIX_DIR=${MATRIX_DIR:-/var/tmp/crishim-bed-matrix}

# matrix_one: on this runtime, under the bed lock held by the caller: fresh bed, crishim, e2e,
# critest both ways, tear-down. Writes $MATRIX_DIR/$RUNTIME.row.
matrix_one() {
  require_root
  local row=$MATRIX_DIR/$RUNTIME.row start e2e_rc=0 conf_rc=0 up_rc=0 version="?" critest e2e
  mkdir -p "$MATRIX_DIR"
  rm -f "$row" "$BED_DIR/e2e.summary" "$BED_DIR/conformance/summary.tsv"
  start=$(date +%s)
  log "matrix: $RUNTIME"
  bed_down >/dev/null 2>&1 || true
  trap 'bed_down' EXIT
  local up_failed="bed not up"
  if (bed_config && bed_start && bed_images); then
    version=$(crictl_to "$RUNTIME_SOCK" version | awk '/^RuntimeName/ {n=$2} /^RuntimeVersion/ {v=$2} END {print n " " v}')
    up_failed="crishim not ready"
    (crishim_up) || up_rc=$?
  else
    up_rc=1
  fi
  if [ "$up_rc" = 0 ]; then
    (bed_e2e) || e2e_rc=$?
    (bed_conformance both) || conf_rc=$?
  fi
  bed_down
  trap - EXIT
  critest=$(cat "$BED_DIR/conformance/summary.tsv" 2>/dev/null || printf 'not run\t-\t-\t-')
  e2e=$(cat "$BED_DIR/e2e.summary" 2>/dev/null || echo "not run")
  [ "$up_rc" = 0 ] || e2e="not run: $up_failed"
  [ "$e2e_rc" = 0 ] || e2e="$e2e FAIL"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$RUNTIME" "$version" "$critest" "$e2e" "$(($(date +%s) - start)) s" \
    "$([ $((up_rc + e2e_rc + conf_rc)) = 0 ] && echo ok || echo FAIL)" >"$row"
  log "matrix: $RUNTIME done: $(cat "$row")"
  [ $((up_rc + e2e_rc + conf_rc)) = 0 ]
}

# bed_matrix RUNTIME...: builds (outside the lock), then each runtime's bed under the lock in turn
# (each hold ~4-8 min, so a benchmark waiting for the bed gets it between runtimes), then the table.
bed_matrix() {
  require_root
  local runtimes=("$@") rt rc=0 self=$REPO_ROOT/test/bed/bed.sh
  [ ${#runtimes[@]} -gt 0 ] || read -r -a runtimes <<<"$BED_RUNTIMES"
  mkdir -p "$MATRIX_DIR"
  rm -f "$MATRIX_DIR"/*.row
  local start
  start=$(date +%s)
  for rt in "${runtimes[@]}"; do
    # apt and builds need no bed: done before taking the lock, one heavy build at a time
    RUNTIME=$rt bash "$self" prepare || { rc=1; printf '%s\tbuild failed\t-\t-\t-\t-\t-\t-\tFAIL\n' "$rt" >"$MATRIX_DIR/$rt.row"; continue; }
  done
  # compile the e2e tests once, outside the lock
  (cd "$REPO_ROOT" && ${GO:-go} test -tags e2e -count=1 -run '^$' ./test/e2e/... >/dev/null) || die "the e2e tests do not compile"
  for rt in "${runtimes[@]}"; do
    [ -f "$MATRIX_DIR/$rt.row" ] && continue
    log "matrix: waiting for the bed lock $BED_LOCK ($rt)"
    # -o: the bed's daemons must not inherit the lock (a leftover one would hold it forever)
    RUNTIME=$rt BED_DIR='' flock -o "$BED_LOCK" bash "$self" matrix-one || rc=1
  done
  matrix_table "${runtimes[@]}"
  echo "matrix: $(($(date +%s) - start)) s in all; logs under each bed's directory (bed.sh env), rows in $MATRIX_DIR"
  return $rc
}

matrix_table() {
  local rt
  echo
  echo "| runtime | version | critest direct (passed/failed/skipped, time) | critest through crishim | same pass set | e2e (passed/failed/skipped) | critest wall-time ratio crishim/direct | bed time | result |"
  echo "|---|---|---|---|---|---|---:|---:|---|"
  for rt in "$@"; do
    if [ -f "$MATRIX_DIR/$rt.row" ]; then
      awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $7, $6, $8, $9}' "$MATRIX_DIR/$rt.row"
    else
      echo "| $rt | not run | | | | | | | FAIL |"
    fi
  done
  echo
}
