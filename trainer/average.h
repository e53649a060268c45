// `tfm average`: the element-wise mean of the weights of several checkpoints, as the paper does
// for its results (Vaswani et al. 2017, §6.1: the base models average the last 5 checkpoints,
// written at 10-minute intervals, the big models the last 20). The result is a checkpoint
// (trainer/checkpoint.h) that eval and translate read like any other: the training state,
// configuration and tokenizer are copied from the newest input (highest step), the inputs are
// listed in state.json's averaged_from, and there is no optimizer.h5 (it cannot be resumed).
//
// Means are accumulated in double and rounded once to f32, so averaging k copies of one
// checkpoint gives it back bit for bit and averaging two gives their correctly rounded mean.
#pragma once
#include <string>
#include <vector>

namespace tfm {

// Refuses inputs whose models differ (naming both checkpoints and the differing field) or whose
// tokenizers differ, and an `out` that already exists. Returns the newest input.
std::string average_checkpoints(const std::vector<std::string>& inputs, const std::string& out);

// `tfm average (--checkpoints DIR… | --last N --run RUN_DIR) --out PATH`.
int average_main(int argc, char** argv);

}  // namespace tfm
