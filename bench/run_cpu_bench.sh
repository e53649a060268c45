#!/usr/bin/env bash
# CPU training throughput, tfm against the same model in PyTorch (issue 2), in one command:
# builds tfm_train_bench if needed, then for each preset runs tfm and the PyTorch peer
# alternately (tfm, torch, tfm, torch, …: both see the same machine load) and prints a table of
# medians over the repetitions. Figures go to bench/RESULTS.md, "CPU training (issue 2)".
#
#   bench/run_cpu_bench.sh [--presets "tiny base"] [--threads "1 2"] [--reps 3] [--steps 10]
#                          [--warmup 3] [--batch 32] [--src-len 32] [--tgt-len 32]
#                          [--vocab 8000] [--build-dir DIR] [--impl nn|hand]
# Every extra environment (OMP_WAIT_POLICY, GOMP_SPINCOUNT, …) reaches both programs alike.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
presets="tiny base"
reps=3
threads="1 $(nproc)"
steps=10
warmup=3
batch=32
src_len=32
tgt_len=32
vocab=8000
impl=nn
build="$root/build-bench"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --presets) presets=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --src-len) src_len=$2; shift 2 ;;
    --tgt-len) tgt_len=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --impl) impl=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run_cpu_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# Debian's python3-torch lives under /usr/bin/python3 (another python3 may come first on PATH).
py=/usr/bin/python3
"$py" -c "import torch" 2>/dev/null || { echo "run_cpu_bench.sh: $py cannot import torch" >&2; exit 1; }

if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DTFM_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
ninja -C "$build" tfm_train_bench >/dev/null
bench="$build/bench/tfm_train_bench"

shape=(--batch "$batch" --src-len "$src_len" --tgt-len "$tgt_len" --vocab "$vocab"
       --steps "$steps" --warmup "$warmup")
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n), $(nproc) cores, threads: $threads," \
     "batch $batch × ($src_len + $tgt_len), vocab $vocab, $steps steps after $warmup warm-up," \
     "$reps repetitions, torch impl $impl"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Each repetition: the sgemm peak (a 2048³ product, best of 5; the table uses the highest seen),
# then tfm, then torch, at every thread count.
for preset in $presets; do
  for ((r = 1; r <= reps; ++r)); do
    for t in $threads; do
      "$bench" --sgemm-only --threads "$t" | grep '^RESULT' | sed 's/^RESULT sgemm/SGEMM/' \
        | tee -a "$log" >&2
      "$bench" --preset "$preset" "${shape[@]}" --threads "$t" --no-sgemm | grep '^RESULT' \
        | tee -a "$log" >&2
      "$py" "$root/bench/torch_peer.py" --preset "$preset" "${shape[@]}" --threads "$t" \
        --impl "$impl" | grep '^RESULT' | tee -a "$log" >&2
    done
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$log" "$presets" "$threads" <<'EOF'
import statistics, sys
rows, peak = {}, {}
for line in open(sys.argv[1]):
    # "SGEMM sgemm_peak=… threads=…" or "RESULT ours|torch preset=… tokens_per_s=… threads=… …"
    words = line.split()
    kind = words[1] if words[0] == "RESULT" else words[0]
    kv = dict(f.split("=", 1) for f in words[1:] if "=" in f)
    t = int(kv["threads"])
    if kind == "SGEMM":
        peak[t] = max(peak.get(t, 0.0), float(kv["sgemm_peak"]))
    else:
        rows.setdefault((kv["preset"], t, kind), []).append(kv)
print("sgemm peak (2048³, highest of the run): " +
      ", ".join(f"{p:.1f} GFLOP/s with {t} thread(s)" for t, p in sorted(peak.items())))
print(f"{'model':6} | {'thr':>3} | {'ours tok/s':>10} | {'torch tok/s':>11} | {'ratio':>5} | "
      f"{'ours GFLOP/s':>12} | {'% of peak':>9} | {'torch GFLOP/s':>13} | "
      f"{'CPU s/step ours, torch':>22}")
print("-" * 118)
for preset in sys.argv[2].split():
    for t in map(int, sys.argv[3].split()):
        ours, torch = rows.get((preset, t, "ours"), []), rows.get((preset, t, "torch"), [])
        if not ours or not torch:
            continue
        med = lambda rs, k: statistics.median(float(r[k]) for r in rs)
        o, tt = med(ours, "tokens_per_s"), med(torch, "tokens_per_s")
        og, tg = med(ours, "gflops"), med(torch, "gflops")
        oc, tc = med(ours, "cpu_ms") / 1e3, med(torch, "cpu_ms") / 1e3
        print(f"{preset:6} | {t:3d} | {o:10.0f} | {tt:11.0f} | {o / tt:5.2f} | {og:12.1f} | "
              f"{100 * og / peak[t]:8.1f}% | {tg:13.1f} | {oc:10.2f}, {tc:10.2f}")
        each = lambda rs: ", ".join(f"{float(r['tokens_per_s']):.0f}" for r in rs)
        print(f"{'':6}   {'':3}   runs: ours {each(ours)}; torch {each(torch)}")
EOF
