#include "trainer/train.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "comm/communicator.h"
#include "comm/world.h"
#include "data/files.h"
#include "data/reader.h"
#include "kernels/core/device.h"
#include "kernels/core/dtype.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/optimizer/optimizer.h"
#include "trainer/evaluate.h"
#include "trainer/metrics.h"
#include "trainer/sharding.h"
#include "trainer/signals.h"

extern "C" void openblas_set_num_threads(int);

namespace tfm {

namespace {

// Holds an exclusive lock on RUN_DIR/.lock for the life of the run, so two trainers never write
// the same run directory (the lock dies with the process, even on SIGKILL).
class RunDirLock {
 public:
  explicit RunDirLock(const std::string& run_dir) {
    const std::string path = (std::filesystem::path(run_dir) / ".lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    TFM_CHECK(fd_ >= 0, "cannot open ", path, ": ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fail(cat("run directory ", run_dir, " is in use by another `tfm train` (", path, " is locked)"));
    }
  }
  ~RunDirLock() { ::close(fd_); }
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace

namespace {

TensorParallel tensor_parallel_of(comm::ParallelContext* par) {
  TensorParallel tp;
  if (par && par->tp_size() > 1) {
    tp.rank = par->tp_rank();
    tp.size = par->tp_size();
    tp.group = &par->tp();
    tp.host_group = &par->host_comm(comm::Axis::tp);
  }
  return tp;
}

// A small host all-reduce (token counts, loss sums, flags) over one axis of the grid; a no-op
// without a grid.
void host_all_reduce(comm::ParallelContext* par, comm::Axis axis, std::vector<double>& values,
                     comm::ReduceOp op = comm::ReduceOp::sum) {
  if (!par) return;
  comm::Communicator& c = par->host_comm(axis);
  if (c.size() == 1) return;
  c.all_reduce(Tensor(values.data(), DType::f64, Device::cpu, {int64_t(values.size())}), op);
}

void host_barrier(comm::ParallelContext* par) {
  if (par && par->world_size() > 1) par->host_comm(comm::Axis::world).barrier();
}

// Dropout seeds are a pure function of (seed, step, global micro-batch index).
constexpr int kMicroBatchBits = 20;

// The model's size, whatever part of it this rank holds.
int64_t logical_parameter_count(const ParameterStore& params) {
  int64_t n = 0;
  for (const ParamInfo& p : params.params()) {
    int64_t k = 1;
    for (int64_t d : p.shape) k *= d;
    n += k;
  }
  return n;
}

std::string fixed(double x, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
  return buf;
}

}  // namespace

namespace {
// The library takes "auto" as the CPU in fp32, so a test constructing a Trainer behaves the same
// on every machine; `tfm train` resolves "auto" first (resolve_device_and_precision), picking the
// GPU when there is one.
Device device_of(const TrainOptions& o) {
  return o.device == "cuda" ? Device::cuda : Device::cpu;
}
DType compute_dtype_of(const TrainOptions& o) {
  if (o.precision == "bf16") return DType::bf16;
  if (o.precision == "fp16") return DType::f16;
  if (o.precision == "fp64") return DType::f64;  // CPU only: equivalence tests in double
  return DType::f32;
}
// Master weights, gradients and Adam moments: f32, or f64 for an fp64 run.
DType master_dtype_of(DType compute) { return compute == DType::f64 ? DType::f64 : DType::f32; }
Context context_for(Device device, Arena& arena) {
  Context ctx;
  ctx.device = device;
  // The GPU ops take their scratch from the step's arena (reset with it); the CPU twins manage
  // their own.
  if (device == Device::cuda) ctx.workspace = &arena;
  return ctx;
}
// fp16 dynamic loss scaling: the initial scale and how many clean steps double it.
constexpr double kInitialLossScale = 65536.0;
constexpr int64_t kGrowthInterval = 2000;
}  // namespace

Trainer::Trainer(const TrainOptions& options, std::unique_ptr<BatchSource> source,
                 comm::ParallelContext* parallel)
    : opt_(options), source_(std::move(source)), par_(parallel), device_(device_of(options)),
      compute_(compute_dtype_of(options)), arena_(device_), ctx_(context_for(device_, arena_)),
      model_(options.model, tensor_parallel_of(parallel)) {
  TFM_CHECK(device_ == Device::cuda || compute_ == DType::f32 || compute_ == DType::f64,
            "--precision ", opt_.precision, ": reduced precision needs the GPU (--device cuda)");
  TFM_CHECK(device_ == Device::cpu || compute_ != DType::f64, "--precision fp64 runs on the CPU only");
  if (compute_ == DType::f16) loss_scale_ = kInitialLossScale;
  if (par_) {
    world_rank_ = par_->world_rank();
    world_size_ = par_->world_size();
    dp_rank_ = par_->dp_rank();
    dp_size_ = par_->dp_size();
    TFM_CHECK(par_->tp_size() == opt_.tp, "trainer: the process grid has TP ", par_->tp_size(),
              " but --tp is ", opt_.tp);
  }
  TFM_CHECK(opt_.accumulate * dp_size_ < (int64_t(1) << kMicroBatchBits),
            "--accumulate ", opt_.accumulate, " × ", dp_size_, " data-parallel ranks: at most 2^",
            kMicroBatchBits, " micro-batches per step");
  if (opt_.threads > 0) {
    omp_set_num_threads(opt_.threads);
    openblas_set_num_threads(opt_.threads);
  }
  ParameterStore& params = model_.params();
  // f32 masters (and gradients) on the training device, with a bf16/f16 working copy under mixed
  // precision; padded to a multiple of DP, so the reducer's buckets split evenly over DP ranks.
  params.allocate(master_dtype_of(compute_), device_, dp_size_, compute_);
  params.initialize(opt_.seed);
  params.refresh_working_copy(ctx_);
  owned_ = {comm::ElementRange{0, params.flat_numel()}};
  if (dp_size_ > 1) {
    std::vector<comm::ParamRange> ranges;
    for (const ParamInfo& p : params.params()) ranges.push_back(comm::ParamRange{p.offset, p.numel});
    reducer_ = std::make_unique<comm::GradientReducer>(
        par_->dp(), params.grads(), ranges, int64_t(opt_.bucket_mb * 1024 * 1024),
        opt_.zero ? comm::GradientReducer::Mode::reduce_scatter : comm::GradientReducer::Mode::all_reduce);
    if (opt_.zero) owned_ = reducer_->owned();
    model_.set_gradient_ready_hook([this](int param) {
      if (reducing_) reducer_->mark_ready(param);
    });
  }
  int64_t owned = 0;
  for (const auto& r : owned_) owned += r.numel;
  adam_m_ = Buffer(params.dtype(), {owned}, device_);
  adam_v_ = Buffer(params.dtype(), {owned}, device_);
  fill_zero(ctx_, adam_m_.tensor());  // device memory does not start zeroed
  fill_zero(ctx_, adam_v_.tensor());
}

Buffer Trainer::on_host(const Tensor& flat) const {
  Buffer host(flat.dtype, {flat.numel()});
  if (flat.device == Device::cpu) std::memcpy(host.tensor().data, flat.data, flat.bytes());
  else copy_to_host(host.tensor().data, flat.data, flat.bytes());
  return host;
}

Trainer::~Trainer() = default;

bool Trainer::stop_now() {
  std::vector<double> flag{stop_requested() ? 1.0 : 0.0};
  host_all_reduce(par_, comm::Axis::world, flag, comm::ReduceOp::max);
  return flag[0] > 0;
}

// Σ g² of the reduced gradient over the whole model: each element counted once, on the rank that
// owns it (ZeRO-1: its share; TP: sharded parameters on every rank, replicated ones on TP rank 0).
double Trainer::global_grad_sum_squares() {
  const ParameterStore& params = model_.params();
  const Tensor grads = params.grads();
  const bool tp_root = params.tp_rank() == 0;
  double local = 0;
  for (const ParamInfo& p : params.params()) {
    if (!p.sharded() && !tp_root) continue;
    for (const auto& r : owned_) {
      const int64_t b = std::max(p.offset, r.offset), e = std::min(p.offset + p.numel, r.end());
      if (e > b) local += sum_squares(ctx_, grads.rows(b, e - b));
    }
  }
  std::vector<double> sum{local};
  if (opt_.zero && dp_size_ > 1) host_all_reduce(par_, comm::Axis::world, sum);
  else host_all_reduce(par_, comm::Axis::tp, sum);
  return sum[0];
}

StepReport Trainer::step() {
  ParameterStore& params = model_.params();
  fill_zero(ctx_, params.grads());
  std::vector<Batch> micro;
  int64_t tgt_tokens = 0, src_tokens = 0;
  for (int64_t i = 0; i < opt_.accumulate; ++i) {
    micro.push_back(source_->next());
    tgt_tokens += micro.back().tgt_tokens();
    src_tokens += micro.back().src_tokens();
  }
  // Every micro-batch's loss is divided by the step's token count over all DP ranks, so the
  // summed gradient is that of the mean loss over the whole global batch.
  std::vector<double> counts{double(tgt_tokens), double(src_tokens)};
  host_all_reduce(par_, comm::Axis::dp, counts);
  // fp16: the loss is scaled up so small gradients survive in half precision; the gradients
  // are scaled back before clipping and the update.
  const double grad_scale = loss_scale_ / counts[0];
  LossStats total;
  for (size_t i = 0; i < micro.size(); ++i) {
    const uint64_t global_micro = uint64_t(i) * uint64_t(dp_size_) + uint64_t(dp_rank_);
    const uint64_t dropout_seed = mix64(opt_.seed ^ mix64((uint64_t(step_) << kMicroBatchBits) + global_micro));
    const bool last = i + 1 == micro.size();
    if (reducer_ && last) {
      reducer_->begin_step();
      reducing_ = opt_.overlap_reduce;  // off: every bucket starts in finish(), after backward
    }
    total += model_.forward_backward(ctx_, arena_, micro[i], grad_scale, dropout_seed);
    reducing_ = false;
  }
  if (reducer_) reducer_->finish();
  std::vector<double> sums{total.loss_sum, total.nll_sum, double(total.tokens)};
  host_all_reduce(par_, comm::Axis::dp, sums);

  StepReport r;
  r.step = ++step_;
  r.loss = sums[0] / sums[2];
  r.nll = sums[1] / sums[2];
  r.tokens = int64_t(counts[0] + counts[1]);
  r.lr = opt_.lr.at(r.step);
  r.loss_scale = loss_scale_;
  // The inf/NaN check of loss scaling is this norm: Σ g² is non-finite iff some g is.
  r.grad_norm = std::sqrt(global_grad_sum_squares()) / loss_scale_;
  if (!std::isfinite(r.grad_norm)) {
    r.skipped = true;  // an overflow must not reach the weights (every rank sees the same norm)
    ++skipped_;
    if (compute_ == DType::f16) {
      loss_scale_ = std::max(1.0, loss_scale_ / 2);
      loss_scale_good_steps_ = 0;
    }
  } else {
    const Tensor values = params.values(), grads = params.grads();
    double factor = 1.0 / loss_scale_;  // unscale and clip in one pass
    if (opt_.clip_norm > 0 && r.grad_norm > opt_.clip_norm) factor *= opt_.clip_norm / r.grad_norm;
    if (factor != 1.0)
      for (const auto& o : owned_) scale_inplace(ctx_, grads.rows(o.offset, o.numel), factor);
    if (compute_ == DType::f16 && ++loss_scale_good_steps_ >= kGrowthInterval) {
      loss_scale_ *= 2;
      loss_scale_good_steps_ = 0;
    }
    AdamHyper h;
    h.lr = r.lr;
    h.beta1 = opt_.adam_beta1;
    h.beta2 = opt_.adam_beta2;
    h.eps = opt_.adam_eps;
    h.weight_decay = opt_.weight_decay;
    h.step = r.step - skipped_;  // updates applied so far, this one included (bias correction)
    int64_t at = 0;  // where this range's moments start in the concatenated buffers
    const bool working = params.has_working_copy();
    for (const auto& o : owned_) {
      const int64_t n = o.numel;
      // The same pass writes the bf16/f16 working copy the next forward reads.
      adam_step(ctx_, h, values.rows(o.offset, n), grads.rows(o.offset, n),
                adam_m_.tensor().rows(at, n), adam_v_.tensor().rows(at, n),
                working ? params.working().tensor().rows(o.offset, n) : Tensor());
      at += n;
    }
    if (reducer_ && opt_.zero) {  // every rank's updated share, to all
      reducer_->gather(values);
      if (working) reducer_->gather(params.working().tensor());
    }
  }
  history_.push_back(r);
  return r;
}

EvalReport Trainer::evaluate() {
  // Held-out batches are shared out over the DP ranks (TP ranks of a group evaluate together).
  LossStats total;
  std::vector<Batch> held = source_->held_out();
  for (size_t i = size_t(dp_rank_); i < held.size(); i += size_t(dp_size_))
    total += model_.evaluate(ctx_, arena_, held[i]);
  std::vector<double> sums{total.loss_sum, total.nll_sum, double(total.tokens), double(total.correct)};
  host_all_reduce(par_, comm::Axis::dp, sums);
  EvalReport e;
  e.tokens = int64_t(sums[2]);
  e.loss = sums[0] / sums[2];
  e.nll = sums[1] / sums[2];
  e.perplexity = std::exp(e.nll);
  e.accuracy = sums[3] / sums[2];
  evaluate_bleu(e);
  return e;
}

void Trainer::ensure_logical_model() {
  if (!logical_) {
    logical_ = std::make_unique<Transformer>(opt_.model);
    logical_->params().allocate(model_.params().dtype());
  }
}

// BLEU of the first --eval-bleu-sentences of the valid split, translated by beam search. Every
// rank translates its share with a whole model (under TP the shards are gathered first) and the
// sentence statistics are summed, so the score is the corpus BLEU of all of them.
void Trainer::evaluate_bleu(EvalReport& e) {
  if (opt_.eval_bleu_sentences <= 0 || source_->bleu_split().empty()) return;
  const auto start = std::chrono::steady_clock::now();
  // Decoding runs on the host, on a whole model: under TP the shards are gathered, on the GPU the
  // master weights are copied.
  Transformer* whole = &model_;
  if (model_.params().tp_size() > 1 || device_ != Device::cpu) {
    ensure_logical_model();
    Buffer values = on_host(model_.params().values());
    gather_logical(model_.params(), values.tensor(),
                   par_ ? &par_->host_comm(comm::Axis::tp) : nullptr, logical_->params(),
                   logical_->params().values());
    whole = logical_.get();
  }
  ReaderOptions ro;
  ro.split = source_->bleu_split();
  ro.batch_tokens = opt_.batch_tokens;
  ro.shuffle = false;
  ro.verify = false;  // verified when the training reader opened the dataset
  ro.rank = world_rank_;
  ro.world = world_size_;
  DatasetReader reader(source_->dataset_dir(), ro);
  EvalOptions eo;
  eo.decode.beam = opt_.eval_beam;
  eo.max_sentences = opt_.eval_bleu_sentences;
  Arena host_arena;  // the decoder's scratch; on the host whatever the training device
  EvalResult r = whole == &model_ ? evaluate_split(*whole, ctx_, arena_, reader, eo)
                                  : evaluate_split(*whole, Context{}, host_arena, reader, eo);
  auto flat = r.bleu_stats.to_array();
  std::vector<double> sums(flat.begin(), flat.end());
  sums.push_back(double(r.sentences));
  host_all_reduce(par_, comm::Axis::world, sums);
  std::vector<int64_t> totals(sums.begin(), sums.end() - 1);
  EvalResult all;
  all.bleu_stats = bleu::BleuStats::from_array(totals);
  const bleu::BleuScore score = all.bleu();
  e.has_bleu = true;
  e.bleu = score.score;
  e.bleu_signature = score.format(2, bleu::signature(eo.bleu_options, 1));
  e.bleu_sentences = int64_t(sums.back());
  e.bleu_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TrainingState Trainer::state() const {
  TrainingState s;
  s.step = step_;
  s.seed = opt_.seed;
  s.data_position = source_->position();
  s.skipped_steps = skipped_;
  s.loss_scale = loss_scale_;
  s.loss_scale_good_steps = loss_scale_good_steps_;
  s.config = opt_.resolved();
  s.model = model_.config();
  return s;
}

// ZeRO-1: the moments of the whole flat buffer, each rank contributing its share.
void Trainer::gather_full_moments(Buffer& m, Buffer& v) {
  const int64_t n = model_.params().flat_numel();
  m = Buffer(model_.params().dtype(), {n}, device_);
  v = Buffer(model_.params().dtype(), {n}, device_);
  fill_zero(ctx_, m.tensor());
  fill_zero(ctx_, v.tensor());
  int64_t at = 0;
  for (const auto& o : owned_) {
    const int64_t len = o.numel;
    copy(ctx_, adam_m_.tensor().rows(at, len), m.tensor().rows(o.offset, len));
    copy(ctx_, adam_v_.tensor().rows(at, len), v.tensor().rows(o.offset, len));
    at += len;
  }
  reducer_->gather(m.tensor());
  reducer_->gather(v.tensor());
}

std::string Trainer::save() {
  // Whole moments of this rank's TP part (ZeRO-1 gathers them over DP; every rank takes part).
  Buffer full_m, full_v;
  Tensor m = adam_m_.tensor(), v = adam_v_.tensor();
  if (reducer_ && opt_.zero) {
    gather_full_moments(full_m, full_v);
    m = full_m.tensor();
    v = full_v.tensor();
  }
  CheckpointWrite w;
  w.params = &model_.params();
  w.adam_m = m;
  w.adam_v = v;
  // Logical tensors from the TP shards: DP rank 0's TP group gathers, world rank 0 writes.
  Buffer logical_m, logical_v;
  if (model_.params().tp_size() > 1 && dp_rank_ == 0) {
    ensure_logical_model();
    ParameterStore& full = logical_->params();
    comm::Communicator* tp = &par_->host_comm(comm::Axis::tp);
    logical_m = Buffer(full.dtype(), {full.flat_numel()});
    logical_v = Buffer(full.dtype(), {full.flat_numel()});
    // Host copies first: the gather and the files work on host memory.
    const Buffer host_values = on_host(model_.params().values());
    const Buffer host_m = on_host(m), host_v = on_host(v);
    gather_logical(model_.params(), host_values.tensor(), tp, full, full.values());
    gather_logical(model_.params(), host_m.tensor(), tp, full, logical_m.tensor());
    gather_logical(model_.params(), host_v.tensor(), tp, full, logical_v.tensor());
    w.params = &full;
    w.adam_m = logical_m.tensor();
    w.adam_v = logical_v.tensor();
  }
  if (is_root()) {
    w.state = state();
    w.tokenizer_path = source_->tokenizer_path();
    saved_dir_ = save_checkpoint(opt_.out, w, opt_.keep);
  } else {
    saved_dir_ = (std::filesystem::path(opt_.out) / "checkpoints" / checkpoint_name(step_)).string();
  }
  // Nobody goes on (or exits) before the checkpoint is complete.
  host_barrier(par_);
  saved_step_ = step_;
  return saved_dir_;
}

TrainingState Trainer::resume(const std::string& checkpoint_dir) {
  // The seed fixes the data order and every dropout mask: a run continues only under its own.
  TrainingState peek = read_checkpoint_state(checkpoint_dir);
  TFM_CHECK(peek.seed == opt_.seed, "--seed ", opt_.seed, " differs from the seed ", peek.seed,
            " of checkpoint ", checkpoint_dir, "; resume with --seed ", peek.seed,
            " or start a new run (another --out, or --resume none)");
  // One rank hashes the files for all; the others read only their slices.
  if (is_root()) verify_checkpoint(checkpoint_dir);
  host_barrier(par_);
  Buffer full_m, full_v;
  Tensor m = adam_m_.tensor(), v = adam_v_.tensor();
  if (reducer_ && opt_.zero) {
    full_m = Buffer(model_.params().dtype(), {model_.params().flat_numel()}, device_);
    full_v = Buffer(model_.params().dtype(), {model_.params().flat_numel()}, device_);
    m = full_m.tensor();
    v = full_v.tensor();
  }
  TrainingState s = load_checkpoint(checkpoint_dir, model_.params(), &m, &v, /*verify=*/false);
  model_.params().refresh_working_copy(ctx_);
  if (reducer_ && opt_.zero) {
    int64_t at = 0;
    for (const auto& o : owned_) {
      const int64_t len = o.numel;
      copy(ctx_, m.rows(o.offset, len), adam_m_.tensor().rows(at, len));
      copy(ctx_, v.rows(o.offset, len), adam_v_.tensor().rows(at, len));
      at += len;
    }
  }
  std::string diff = model_structure_difference(s.model, model_.config());
  TFM_CHECK(diff.empty(), "checkpoint ", checkpoint_dir, " holds a different model than this "
            "configuration: ", diff, " (checkpoint vs configuration)");
  source_->restore(s.data_position);
  step_ = s.step;
  skipped_ = s.skipped_steps;
  if (compute_ == DType::f16 && s.loss_scale > 1) {  // a fp16 run's scale carries over
    loss_scale_ = s.loss_scale;
    loss_scale_good_steps_ = s.loss_scale_good_steps;
  }
  // A checkpoint of this run directory need not be written again before the next step; one of
  // another run (--resume PATH) must, or a relaunch with --resume auto would start over.
  std::error_code ec;
  const std::filesystem::path own = std::filesystem::path(opt_.out) / "checkpoints";
  if (std::filesystem::equivalent(std::filesystem::canonical(checkpoint_dir, ec).parent_path(), own, ec)) {
    saved_step_ = s.step;
    saved_dir_ = checkpoint_dir;
  }
  return s;
}

EvalReport Trainer::run() {
  namespace fs = std::filesystem;
  std::unique_ptr<MetricsLogger> metrics;
  if (is_root()) {
    fs::create_directories(opt_.out);
    write_file_atomic((fs::path(opt_.out) / "config").string(), opt_.resolved());
    metrics = std::make_unique<MetricsLogger>(opt_.out);
    std::cout << "tfm train: " << model_.config().summary() << "\n"
              << "  parameters " << logical_parameter_count(model_.params()) << ", device "
              << (device_ == Device::cuda ? cat("cuda (", cuda_device_name(par_ ? par_->local_rank() % std::max(1, cuda_device_count()) : 0), ")")
                                          : cat("cpu (", omp_get_max_threads(), " threads)"))
              << ", " << opt_.precision
              << (compute_ == DType::bf16 || compute_ == DType::f16 ? " compute, fp32 master weights" : "")
              << ", " << opt_.steps << " steps of "
              << opt_.accumulate << " × " << opt_.batch_tokens << " tokens"
              << (dp_size_ > 1 ? cat(" × ", dp_size_, " DP ranks") : std::string()) << "\n";
    if (par_ && world_size_ > 1)
      std::cout << "  " << world_size_ << " ranks = DP " << dp_size_ << " × TP " << par_->tp_size()
                << (opt_.zero ? ", ZeRO-1" : "")
                << (reducer_ ? cat(", ", reducer_->num_buckets(), " gradient buckets of ≤ ",
                                   opt_.bucket_mb, " MiB") : std::string())
                << "\n";
    std::cout << std::flush;
  }
  const int64_t start_step = step_;
  if (start_step >= opt_.steps) {
    if (is_root())
      std::cout << "  already at step " << start_step << " of " << opt_.steps
                << "; nothing to do (raise --steps to train further)" << std::endl;
    return EvalReport{};
  }

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto window_start = start;
  int64_t window_tokens = 0;
  double window_comm_wait = 0;
  EvalReport last_eval;
  bool stop = stop_now();
  while (step_ < opt_.steps && !stop) {
    StepReport r = step();
    stop = stop_now();  // every rank agrees, so all finish this step and checkpoint together
    window_tokens += r.tokens;
    if (reducer_) window_comm_wait += reducer_->last_exposed_seconds();
    bool log_now = r.step % opt_.log_every == 0 || r.step == opt_.steps || r.step == start_step + 1 || stop;
    bool eval_now = r.step == opt_.steps || (opt_.eval_every > 0 && r.step % opt_.eval_every == 0);
    bool save_now = r.step == opt_.steps || (opt_.save_every > 0 && r.step % opt_.save_every == 0);
    if (log_now && is_root()) {
      auto now = clock::now();
      double window_s = std::chrono::duration<double>(now - window_start).count();
      double elapsed = std::chrono::duration<double>(now - start).count();
      double tokens_per_s = window_s > 0 ? double(window_tokens) / window_s : 0.0;
      std::cout << format_progress(r.step, opt_.steps, r.loss, r.lr, tokens_per_s, elapsed, start_step)
                << (r.skipped ? cat(" | step skipped (non-finite gradient", compute_ == DType::f16
                                    ? cat("; loss scale now ", loss_scale_) : std::string(), ")")
                              : std::string())
                << std::endl;
      if (r.step == start_step + 1 && device_ == Device::cuda)
        std::cout << "  device memory: parameters, gradients, working copy and Adam state "
                  << (logical_parameter_count(model_.params()) * (4 + 4 + 8 + int64_t(dtype_size(compute_))) >> 20)
                  << " MiB (whole model), activation arena " << (arena_.high_water() >> 20)
                  << " MiB after the first step" << std::endl;
      std::vector<std::pair<std::string, double>> fields{
          {"loss", r.loss}, {"nll", r.nll}, {"ppl", std::exp(r.nll)}, {"lr", r.lr},
          {"grad_norm", r.grad_norm}, {"tokens_per_s", tokens_per_s}, {"elapsed_s", elapsed},
          {"skipped", r.skipped ? 1.0 : 0.0}};
      if (reducer_) fields.emplace_back("comm_wait_s", window_comm_wait);
      if (compute_ == DType::f16) fields.emplace_back("loss_scale", r.loss_scale);
      if (r.step == start_step + 1 && device_ == Device::cuda)
        fields.emplace_back("arena_mib", double(arena_.high_water()) / (1 << 20));
      metrics->log(r.step, fields);
    }
    if (log_now) {
      window_start = clock::now();
      window_tokens = 0;
      window_comm_wait = 0;
    }
    if (eval_now) {
      last_eval = evaluate();
      if (is_root()) {
        std::cout << "eval step " << r.step << " | loss " << last_eval.loss << " | nll "
                  << last_eval.nll << " | ppl " << last_eval.perplexity << " | token accuracy "
                  << last_eval.accuracy;
        if (last_eval.has_bleu)
          std::cout << " | BLEU " << fixed(last_eval.bleu, 2) << " (" << last_eval.bleu_sentences
                    << " valid sentences, beam " << opt_.eval_beam << ", "
                    << fixed(last_eval.bleu_seconds, 1) << " s)\n  " << last_eval.bleu_signature;
        std::cout << std::endl;
        std::vector<std::pair<std::string, double>> fields{
            {"eval_loss", last_eval.loss}, {"eval_nll", last_eval.nll},
            {"eval_ppl", last_eval.perplexity}, {"eval_accuracy", last_eval.accuracy}};
        if (last_eval.has_bleu) fields.emplace_back("eval_bleu", last_eval.bleu);
        metrics->log(r.step, fields);
      }
    }
    if (save_now && !stop) {
      std::string dir = save();
      if (r.step == opt_.steps && is_root()) std::cout << "checkpoint " << dir << std::endl;
    }
  }
  if (metrics) metrics->flush();
  if (stop) {
    std::string dir = saved_step_ == step_ ? saved_dir_ : save();
    int sig = stop_signal();
    if (is_root())
      std::cout << "tfm train: stopped" << (sig == SIGTERM ? " by SIGTERM" : sig == SIGINT ? " by SIGINT" : "")
                << " at step " << step_ << "; checkpoint " << dir
                << "; run the same command again to continue" << std::endl;
  }
  return last_eval;
}

namespace {

// "steps 6 → 8, lr 1 → 2": the `key = value` lines of two resolved configurations that differ
// (the run directory aside).
std::string changed_options(const std::string& before, const std::string& after) {
  auto parse = [](const std::string& text) {
    std::vector<std::pair<std::string, std::string>> kv;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      size_t eq = line.find(" = ");
      if (eq != std::string::npos) kv.emplace_back(line.substr(0, eq), line.substr(eq + 3));
    }
    return kv;
  };
  auto old_kv = parse(before);
  std::string out;
  for (const auto& [key, value] : parse(after)) {
    if (key == "out") continue;
    std::string was = "(unset)";
    for (const auto& [k, v] : old_kv)
      if (k == key) was = v;
    if (was != value) out += cat(out.empty() ? "" : ", ", key, " ", was, " → ", value);
  }
  return out;
}

}  // namespace

ResumePlan plan_resume(const TrainOptions& opt) {
  namespace fs = std::filesystem;
  ResumePlan plan;
  plan.run_dir = opt.out;
  const std::string run = opt.out;
  const fs::path ckdir = fs::path(run) / "checkpoints";
  std::error_code ec;
  if (opt.resume == "auto") {
    plan.from = latest_checkpoint(run);
    return plan;
  }
  if (opt.resume == "none") {
    auto existing = list_checkpoints(run);
    if (!existing.empty() || fs::exists(ckdir / "latest", ec)) {
      TFM_CHECK(opt.overwrite, "--resume none: run directory ", run, " already has checkpoints (in ",
                ckdir.string(), "); continue it with --resume auto, choose another --out, or add "
                "--overwrite to discard them");
    }
    if (opt.overwrite) {
      // Start over: the old run's checkpoints, metrics and TensorBoard events go.
      if (fs::exists(ckdir, ec)) plan.discard.push_back(ckdir.string());
      if (fs::exists(fs::path(run) / "metrics.jsonl", ec)) plan.discard.push_back((fs::path(run) / "metrics.jsonl").string());
      for (const auto& e : fs::directory_iterator(run, ec))
        if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) plan.discard.push_back(e.path().string());
    }
    return plan;
  }
  // A checkpoint directory, or a run directory whose latest checkpoint is meant.
  std::string from = opt.resume;
  if (!fs::exists(fs::path(from) / "manifest.json", ec) && fs::is_directory(fs::path(from) / "checkpoints", ec)) {
    from = latest_checkpoint(from);
    TFM_CHECK(!from.empty(), "--resume ", opt.resume, ": that run directory has no checkpoint");
  }
  TFM_CHECK(fs::exists(fs::path(from) / "manifest.json", ec), "--resume ", opt.resume,
            ": not a checkpoint directory (no manifest.json) nor a run directory with checkpoints");
  const TrainingState state = read_checkpoint_state(from);
  // Checkpoints of RUN_DIR newer than the one we continue from would be replaced as the run
  // reaches their steps: only with --overwrite.
  std::vector<std::string> newer;
  for (const auto& [step, dir] : list_checkpoints(run))
    if (step > state.step) newer.push_back(dir);
  if (!newer.empty()) {
    TFM_CHECK(opt.overwrite, "--resume ", opt.resume, ": run directory ", run, " holds ", newer.size(),
              " checkpoint(s) newer than step ", state.step, " (up to ", newer.back(), ") that continuing "
              "would replace; choose another --out, or add --overwrite to discard them");
    plan.discard = newer;
  }
  plan.from = from;
  return plan;
}

void discard_for_resume(const ResumePlan& plan) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const std::string& path : plan.discard) {
    // Renamed first, so that a deletion cut short leaves nothing that looks like a checkpoint.
    const std::string doomed = cat(path, ".deleting-", ::getpid());
    if (std::rename(path.c_str(), doomed.c_str()) != 0) fail(cat("cannot remove ", path, ": ", std::strerror(errno)));
    fs::remove_all(doomed, ec);
  }
  const fs::path latest = fs::path(plan.run_dir) / "checkpoints" / "latest";
  if (!plan.discard.empty() && fs::exists(latest, ec)) {
    std::string name = read_file(latest.string());
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (!fs::exists(latest.parent_path() / name / "manifest.json", ec)) {
      auto left = list_checkpoints(plan.run_dir);
      if (left.empty()) fs::remove(latest, ec);
      else write_file_atomic(latest.string(), fs::path(left.back().second).filename().string() + "\n");
    }
  }
}

namespace {

int train_on(comm::World& world, int argc, char** argv) {
  TrainOptions opt;
  if (!parse_train_options(argc, argv, opt)) return 0;
  resolve_device_and_precision(opt);
  TFM_CHECK(world.size() % opt.tp == 0, "--tp ", opt.tp, " does not divide the ", world.size(),
            " ranks of this job (DP × TP must equal the number of processes)");
  comm::ParallelOptions po;
  po.tp = opt.tp;
  po.device = opt.device == "cuda" ? Device::cuda : Device::cpu;  // NCCL on the GPU, MPI on the CPU
  po.comm.timeout_seconds = opt.comm_timeout;
  comm::ParallelContext parallel(world, po);
  const bool root = parallel.world_rank() == 0;
  // Only world rank 0 writes RUN_DIR (config, metrics, checkpoints), and only it holds the lock.
  std::unique_ptr<RunDirLock> lock;
  if (root) {
    std::filesystem::create_directories(opt.out);
    lock = std::make_unique<RunDirLock>(opt.out);
  }
  host_barrier(&parallel);
  ResumePlan plan = plan_resume(opt);  // refuses before anything is built or changed
  std::unique_ptr<BatchSource> source =
      opt.synthetic.empty() ? make_dataset_source(opt, parallel.dp_rank(), parallel.dp_size())
                            : make_synthetic_source(opt, parallel.dp_rank(), parallel.dp_size());
  Trainer trainer(opt, std::move(source), &parallel);
  if (!plan.from.empty()) {
    TrainingState s = trainer.resume(plan.from);
    if (root) {
      std::cout << "tfm train: resumed from " << plan.from << " (step " << s.step << ")" << std::endl;
      std::string changed = changed_options(s.config, opt.resolved());
      if (!changed.empty()) std::cout << "  options changed since that checkpoint: " << changed << std::endl;
    }
  }
  if (root) discard_for_resume(plan);
  host_barrier(&parallel);
  StopSignals signals;
  trainer.run();
  return 0;
}

}  // namespace

int train_main(int argc, char** argv) {
  // Under mpirun or srun every rank runs this; started plainly, a world of one without MPI.
  comm::World world;
  try {
    return train_on(world, argc, argv);
  } catch (const Error& e) {
    // One rank's failure must not leave the others waiting in a collective: end the whole job.
    if (world.size() > 1) world.abort(2, cat("tfm train: error: ", e.what()));
    throw;
  }
}

}  // namespace tfm
