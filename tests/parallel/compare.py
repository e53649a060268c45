#!/usr/bin/python3
"""Compare two training runs of tests/parallel/parallel_test.sh.

  compare.py losses RUN_A RUN_B RTOL [FIRST_STEP]
      every step of RUN_A/metrics.jsonl (from FIRST_STEP on) has a loss in RUN_B's, and
      |a - b| <= RTOL * |b|
  compare.py checkpoint DIR_A DIR_B RTOL [TENSOR_TOL]
      model.h5 and optimizer.h5 hold the same tensors (names, shapes), and
        - each of the weights, adam_m and adam_v agrees as a whole: ||a - b|| <= RTOL * ||b||
          (2-norm over all its tensors), which is what "agree to RTOL relative" means;
        - no tensor is off on its own: max|a - b| <= TENSOR_TOL (default 1000 * RTOL) *
          max(max|b|, 1e-2 * the largest |b| of its group), so a small tensor that is wrong
          cannot hide in the norm. The floor keeps tensors whose exact value is ~0 (the key
          bias, whose gradient is rounding noise, and its Adam moments) from demanding that
          their noise agree.
Prints the worst relative difference found; exits 1 on a mismatch.
"""
import json
import sys

import h5py
import numpy as np


def losses(run, first):
    out = {}
    with open(f"{run}/metrics.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec and rec["step"] >= first:
                out[rec["step"]] = rec["loss"]
    return out


def compare_losses(a_run, b_run, rtol, first):
    a, b = losses(a_run, first), losses(b_run, first)
    if not a:
        sys.exit(f"no losses in {a_run}/metrics.jsonl")
    worst = 0.0
    for step, la in sorted(a.items()):
        if step not in b:
            sys.exit(f"step {step} of {a_run} is missing from {b_run}")
        rel = abs(la - b[step]) / abs(b[step])
        worst = max(worst, rel)
        if rel > rtol:
            sys.exit(f"loss at step {step}: {la!r} vs {b[step]!r} (relative {rel:.3g} > {rtol})")
    print(f"losses of steps {min(a)}..{max(a)} agree: worst relative difference {worst:.3g}")


def tensors(group, prefix=""):
    out = {}
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            out.update(tensors(obj, f"{prefix}{name}/"))
        else:
            out[prefix + name] = np.asarray(obj, dtype=np.float64)
    return out


def compare_checkpoints(a_dir, b_dir, rtol, tensor_tol):
    worst, worst_name = 0.0, ""
    for file in ("model.h5", "optimizer.h5"):
        with h5py.File(f"{a_dir}/{file}", "r") as fa, h5py.File(f"{b_dir}/{file}", "r") as fb:
            ta, tb = tensors(fa), tensors(fb)
        if ta.keys() != tb.keys():
            sys.exit(f"{file}: tensors differ: {sorted(ta.keys() ^ tb.keys())[:5]}")
        group_of = lambda name: name.split("/")[0] if "/" in name else "weights"
        peak, diff2, norm2 = {}, {}, {}
        for name in ta:
            if ta[name].shape != tb[name].shape:
                sys.exit(f"{file}:{name}: shapes {ta[name].shape} vs {tb[name].shape}")
            g = group_of(name)
            peak[g] = max(peak.get(g, 0.0), float(np.abs(tb[name]).max(initial=0.0)))
            diff2[g] = diff2.get(g, 0.0) + float(np.sum((ta[name] - tb[name]) ** 2))
            norm2[g] = norm2.get(g, 0.0) + float(np.sum(tb[name] ** 2))
        for g in sorted(norm2):
            rel = (diff2[g] / norm2[g]) ** 0.5 if norm2[g] > 0 else diff2[g] ** 0.5
            print(f"{file} {g}: relative difference {rel:.3g} in norm")
            if rel > rtol:
                sys.exit(f"{file} {g}: relative difference {rel:.3g} > {rtol}")
        for name in sorted(ta):
            a, b = ta[name], tb[name]
            scale = max(float(np.abs(b).max(initial=0.0)), 1e-2 * peak[group_of(name)])
            rel = float(np.abs(a - b).max(initial=0.0)) / scale if scale > 0 else 0.0
            if rel > worst:
                worst, worst_name = rel, f"{file}:{name}"
            if rel > tensor_tol:
                sys.exit(f"{file}:{name}: max difference {np.abs(a - b).max():.3g} is {rel:.3g} "
                         f"of its scale {scale:.3g} (> {tensor_tol})")
    print(f"worst single tensor: {worst:.3g} of its scale ({worst_name})")


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "losses":
        compare_losses(sys.argv[2], sys.argv[3], float(sys.argv[4]),
                       int(sys.argv[5]) if len(sys.argv) > 5 else 1)
    elif kind == "checkpoint":
        rtol = float(sys.argv[4])
        compare_checkpoints(sys.argv[2], sys.argv[3], rtol,
                            float(sys.argv[5]) if len(sys.argv) > 5 else 1000 * rtol)
    else:
        sys.exit(__doc__)
