#!/usr/bin/env bash
# Runs a command that must fail: passes when it exits non-zero within MAX_SECONDS (an integer)
# and its output (stdout and stderr together) matches the extended regular expression REGEX.
#   expect_failure.sh MAX_SECONDS REGEX COMMAND [ARGS...]
# Used by the comm deadline tests: a stuck, skipping or killed rank must end the whole job with a
# message naming the operation, never hang.
set -u
max=$1
regex=$2
shift 2
start=$(date +%s%N)
# The outer timeout is a backstop so a regression shows up as a failure, not a ctest hang.
out=$(timeout --kill-after=5 $((max * 3)) "$@" 2>&1)
rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
elapsed="$((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))"
printf '%s\n' "$out"
echo "---- exit status $rc after ${elapsed} s"
fail=0
if [[ $rc -eq 0 ]]; then
  echo "FAIL: the command exited 0; expected a non-zero exit"; fail=1
fi
if (( elapsed_ms > max * 1000 )); then
  echo "FAIL: took ${elapsed} s; expected at most ${max} s"; fail=1
fi
if ! grep -Eq -- "$regex" <<<"$out"; then
  echo "FAIL: no line matches /$regex/"; fail=1
fi
[[ $fail -eq 0 ]] && echo "PASS: failed as expected within ${max} s with the expected message"
exit $fail
