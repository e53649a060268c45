#include "trainer/average.h"

#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>

#include "kernels/core/check.h"
#include "model/transformer.h"
#include "trainer/checkpoint.h"

namespace po = boost::program_options;

namespace tfm {

namespace {

// The SHA-256 of the checkpoint's tokenizer file ("" for a synthetic-task checkpoint).
std::string tokenizer_sha(const std::string& dir, const TrainingState& s) {
  if (s.tokenizer_file.empty()) return "";
  for (const auto& [name, sha] : checkpoint_files(dir))
    if (name == s.tokenizer_file) return sha;
  fail(cat("checkpoint ", dir, ": its manifest does not list its tokenizer ", s.tokenizer_file));
}

}  // namespace

std::string average_checkpoints(const std::vector<std::string>& inputs, const std::string& out) {
  TFM_CHECK(!inputs.empty(), "average: no checkpoints given");
  std::error_code ec;
  TFM_CHECK(!std::filesystem::exists(out, ec), "--out ", out, " already exists; refusing to overwrite it");

  std::vector<TrainingState> states;
  size_t newest = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    states.push_back(read_checkpoint_state(inputs[i]));
    if (states[i].step >= states[newest].step) newest = i;
  }
  const std::string tok0 = tokenizer_sha(inputs[0], states[0]);
  for (size_t i = 1; i < inputs.size(); ++i) {
    std::string diff = model_structure_difference(states[0].model, states[i].model);
    TFM_CHECK(diff.empty(), "checkpoints ", inputs[0], " and ", inputs[i], " hold different models (", diff,
              "); only checkpoints of one model can be averaged");
    TFM_CHECK(tokenizer_sha(inputs[i], states[i]) == tok0, "checkpoints ", inputs[0], " and ", inputs[i],
              " use different tokenizers; only checkpoints of one model can be averaged");
  }

  Transformer model(states[newest].model);
  ParameterStore& params = model.params();
  params.allocate(DType::f32);
  std::vector<double> sum(size_t(params.total_numel()), 0.0);
  const float* values = params.values().as<float>();
  for (const std::string& dir : inputs) {
    load_checkpoint(dir, params);  // verifies checksums and shapes
    for (size_t k = 0; k < sum.size(); ++k) sum[k] += double(values[k]);
  }
  float* mean = params.values().as<float>();
  for (size_t k = 0; k < sum.size(); ++k) mean[k] = float(sum[k] / double(inputs.size()));

  CheckpointWrite w;
  w.params = &params;
  w.state = states[newest];
  w.state.averaged_from.clear();
  for (const std::string& dir : inputs)
    w.state.averaged_from.push_back(std::filesystem::weakly_canonical(dir, ec).string());
  if (!w.state.tokenizer_file.empty()) w.tokenizer_path = inputs[newest] + "/" + w.state.tokenizer_file;
  save_checkpoint_dir(out, w);
  return inputs[newest];
}

int average_main(int argc, char** argv) {
  std::vector<std::string> checkpoints;
  std::string run, out;
  int64_t last = 0;
  po::options_description opts("Options");
  opts.add_options()("help,h", "show this help")(
      "checkpoints", po::value(&checkpoints)->multitoken(), "checkpoint directories to average")(
      "last", po::value(&last), "average the newest N checkpoints of --run")(
      "run", po::value(&run), "run directory for --last")(
      "out", po::value(&out), "the averaged checkpoint's directory (must not exist)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fail(cat("tfm average: ", e.what(), " (see tfm average --help)"));
  }
  if (vm.count("help")) {
    std::cout << "Usage: tfm average (--checkpoints DIR… | --last N --run RUN_DIR) --out PATH\n\n"
              << "The element-wise mean of the checkpoints' weights, written as a checkpoint for eval "
                 "and translate.\n\n"
              << opts << "\n";
    return 0;
  }
  TFM_CHECK(!out.empty(), "--out: the averaged checkpoint's directory is required");
  TFM_CHECK(checkpoints.empty() != run.empty(), "give either --checkpoints DIR… or --last N --run RUN_DIR");
  if (!run.empty()) {
    TFM_CHECK(last > 0, "--last: must be positive with --run, got ", last);
    auto all = list_checkpoints(run);
    TFM_CHECK(int64_t(all.size()) >= last, "--last ", last, ": run directory ", run, " has only ",
              all.size(), " checkpoint(s)");
    for (size_t i = all.size() - size_t(last); i < all.size(); ++i) checkpoints.push_back(all[i].second);
  } else {
    TFM_CHECK(!vm.count("last"), "--last goes with --run, not --checkpoints");
  }
  std::string newest = average_checkpoints(checkpoints, out);
  std::cout << "tfm average: " << checkpoints.size() << " checkpoint(s) averaged into " << out
            << " (state from " << newest << ")\n";
  return 0;
}

}  // namespace tfm
