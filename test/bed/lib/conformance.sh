# shellcheck shell=bash
# conformance.sh: critest v1.34.0, the full suite, directly against the runtime and through crishim,
# then a comparison of the two JUnit reports. Sourced by bed.sh.
#
# bed.sh conformance [both|direct|crishim]   (default both; only `both` compares)

# run_critest LABEL SOCKET [CRITEST ARGS...]: one full critest run; the JUnit report goes to
# $BED_DIR/conformance/LABEL.xml, the wall time in seconds to LABEL.wall
run_critest() {
  local label=$1 sock=$2 out=$BED_DIR/conformance start end rc
  shift 2
  mkdir -p "$out"
  rm -f "$out/$label.xml" "$out/summary.tsv"
  # both runs start from the same image store: critest's image specs count repo tags, and an
  # image left by another test under a second name makes them fail
  crictl_to "$RUNTIME_SOCK" rmi --prune >/dev/null
  log "critest $CRI_TOOLS_VERSION $label on $RUNTIME (unix://$sock${*:+, $*})"
  start=$(date +%s.%N)
  set +e
  (cd "$out" && "$BED_BIN/critest" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" \
    -ginkgo.no-color -ginkgo.junit-report="$out/$label.xml" "$@" >"$out/$label.log" 2>&1)
  rc=$?
  set -e
  end=$(date +%s.%N)
  grep -E '^(Ran [0-9]+ of|SUCCESS!|FAIL!)' "$out/$label.log" || true
  [ -s "$out/$label.xml" ] || die "critest $label wrote no report (rc=$rc, log $out/$label.log)"
  echo "critest $label: rc=$rc, log $out/$label.log, report $out/$label.xml"
  awk -v s="$start" -v e="$end" 'BEGIN {printf "%.1f\n", e - s}' >"$out/$label.wall"
}

# CRITEST_RERUN_MAX: at most this many specs whose outcome differs are run again, both ways; a
# spec whose re-runs agree counts as flaky (0 disables the re-run)
CRITEST_RERUN_MAX=${CRITEST_RERUN_MAX:-5}

bed_conformance() {
  require_root
  local what=${1:-both}
  case $what in both|direct|crishim) ;; *) die "conformance: unknown target $what" ;; esac
  alive "$PID_RUNTIME" || die "the bed is not up: run '$0 up' first"
  bed_images
  if [ "$what" != crishim ]; then run_critest direct "$RUNTIME_SOCK"; fi
  if [ "$what" != direct ]; then
    alive "$PID_CRISHIM" || crishim_up
    run_critest crishim "$CRISHIM_SOCK"
  fi
  [ "$what" = both ] || return 0
  local out=$BED_DIR/conformance n focus
  log "compare ($RUNTIME)"
  rm -f "$out/differing.txt" "$out"/*-rerun.*
  if junitcmp -differing "$out/differing.txt"; then return 0; fi
  n=$(grep -c . "$out/differing.txt" 2>/dev/null || true)
  if [ "${n:-0}" = 0 ] || [ "$n" -gt "$CRITEST_RERUN_MAX" ]; then return 1; fi
  # ginkgo focuses on the spec text: the JUnit name without its "[It] ", as a regular expression
  # shellcheck disable=SC2016 # the $ is a sed character class member, not an expansion
  focus=$(sed -e 's/^\[It\] //' -e 's/[][\.*^$()+?{}|]/\\&/g' "$out/differing.txt" | paste -sd'|')
  log "re-run the $n differing spec(s) both ways"
  run_critest direct-rerun "$RUNTIME_SOCK" -ginkgo.focus="$focus"
  run_critest crishim-rerun "$CRISHIM_SOCK" -ginkgo.focus="$focus"
  junitcmp -rerun-direct "$out/direct-rerun.xml" -rerun-crishim "$out/crishim-rerun.xml"
}

# junitcmp ARGS...: compare the two full runs (and ARGS), writing the matrix row to summary.tsv
junitcmp() {
  local out=$BED_DIR/conformance
  (cd "$REPO_ROOT" && ${GO:-go} run ./test/bed/junitcmp \
    -direct "$out/direct.xml" -direct-wall "$(cat "$out/direct.wall")" \
    -crishim "$out/crishim.xml" -crishim-wall "$(cat "$out/crishim.wall")" -summary "$out/summary.tsv" "$@")
}
