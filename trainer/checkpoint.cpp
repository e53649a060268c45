// Checkpoints: HDF5 tensors, a JSON state and a manifest of SHA-256s, written atomically. See
// checkpoint.h for the layout and the protocol.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "data/files.h"
#include "data/hdf5_errors.h"
#include "data/json.h"
#include "data/sha256.h"
#include "kernels/core/check.h"
#include "kernels/core/device.h"

namespace fs = std::filesystem;

namespace tfm {

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kModelFile = "model.h5";
constexpr const char* kOptimizerFile = "optimizer.h5";
constexpr const char* kStateFile = "state.json";
constexpr const char* kConfigFile = "config";

// ---- HDF5 plumbing: errors become tfm::Error naming the file, identifiers close themselves.

using H5 = Hdf5Handle;  // data/hdf5_errors.h

void write_int_attribute(hid_t loc, const char* name, int64_t value, const std::string& where) {
  H5 space(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate");
  H5 attr(H5Acreate2(loc, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
          cat(where, ": cannot create attribute ", name));
  if (H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0)
    h5fail(cat(where, ": cannot write attribute ", name));
}

// Tensors may live on a device; files are written from and read into host memory. Master
// weights and moments are f32 (f64 in an fp64 test run, stored as f64).
void expect_stored_dtype(const Tensor& t) {
  TFM_CHECK(t.dtype == DType::f32 || t.dtype == DType::f64, "checkpoint: tensors are stored as "
            "f32 (or f64), got ", dtype_name(t.dtype));
}
hid_t memory_type(const Tensor& t) { return t.dtype == DType::f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; }

const void* host_data(const Tensor& t, std::vector<char>& staging) {
  expect_stored_dtype(t);
  if (t.device == Device::cpu) return t.data;
  staging.resize(t.bytes());
  copy_to_host(staging.data(), t.data, t.bytes());
  return staging.data();
}

// A flat [total] tensor's slice for parameter `p`, shaped like it.
Tensor slice_of(const Tensor& flat, const ParamInfo& p) {
  Tensor t = flat.view({flat.numel()});
  t.data = static_cast<char*>(flat.data) + p.offset * int64_t(dtype_size(flat.dtype));
  t.shape[0] = p.numel;
  return t;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Writes each tensor of `params` (values or the slices of `flat`) as an f32 (f64) dataset named
// prefix + parameter name.
void write_tensors(hid_t file, const std::string& prefix, const ParameterStore& params,
                   const Tensor* flat, const std::string& where) {
  // No timestamps: the same weights give the same bytes (and the same SHA-256).
  H5 dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "H5Pcreate");
  H5Pset_obj_track_times(dcpl.get(), false);
  std::vector<char> staging;
  for (int i = 0; i < int(params.size()); ++i) {
    const ParamInfo& p = params.info(i);
    Tensor t = flat ? slice_of(*flat, p) : params.master(i);
    std::vector<hsize_t> dims(p.shape.begin(), p.shape.end());
    H5 space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr),
             H5Sclose, "H5Screate");
    const std::string name = prefix + p.name;
    expect_stored_dtype(t);
    const hid_t file_type = t.dtype == DType::f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE;
    H5 dset(H5Dcreate2(file, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            H5Dclose, cat(where, ": cannot create dataset ", name));
    if (p.numel > 0 &&
        H5Dwrite(dset.get(), memory_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, host_data(t, staging)) < 0)
      h5fail(cat(where, ": cannot write dataset ", name));
  }
}

H5 create_h5(const std::string& path) {
  return H5(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
            cat("cannot create ", path));
}

H5 create_group(hid_t loc, const char* name, const std::string& where) {
  H5 gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose, "H5Pcreate");
  H5Pset_obj_track_times(gcpl.get(), false);
  return H5(H5Gcreate2(loc, name, H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose,
            cat(where, ": cannot create group ", name));
}

// The names of the datasets directly under `group` (for "holds a tensor the model lacks").
std::vector<std::string> member_names(hid_t group, const std::string& where) {
  H5G_info_t info;
  if (H5Gget_info(group, &info) < 0) h5fail(cat(where, ": cannot list its contents"));
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) h5fail(cat(where, ": cannot list its contents"));
    std::string name(size_t(n), '\0');
    H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), size_t(n) + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

// Reads every parameter's tensor from `group` (the file root or /adam_m, /adam_v) into the
// parameter's value or its slice of `flat`, checking names and shapes.
void read_tensors(hid_t group, const std::string& where, ParameterStore& params, const Tensor* flat) {
  for (const std::string& name : member_names(group, where)) {
    TFM_CHECK(params.contains(name), where, " holds tensor ", name,
              " which this model does not have (a different --share-embeddings or layer count?)");
  }
  std::vector<char> staging;
  for (int i = 0; i < int(params.size()); ++i) {
    const ParamInfo& p = params.info(i);
    htri_t exists = H5Lexists(group, p.name.c_str(), H5P_DEFAULT);
    if (exists < 0) h5fail(cat(where, ": cannot look up ", p.name));
    TFM_CHECK(exists > 0, where, " lacks tensor ", p.name, " ", shape_str(p.shape),
              " which this model has");
    H5 dset(H5Dopen2(group, p.name.c_str(), H5P_DEFAULT), H5Dclose, cat(where, ": cannot open ", p.name));
    H5 space(H5Dget_space(dset.get()), H5Sclose, "H5Dget_space");
    int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) h5fail(cat(where, ": cannot read the shape of ", p.name));
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    std::vector<int64_t> got(dims.begin(), dims.end());
    TFM_CHECK(got == p.shape, "tensor ", p.name, " has shape ", shape_str(got), " in ", where,
              " but the model's is ", shape_str(p.shape),
              " (the checkpoint was written for a different model configuration)");
    Tensor t = flat ? slice_of(*flat, p) : params.master(i);
    expect_stored_dtype(t);  // HDF5 converts between the file's f32/f64 and this
    void* dst = t.data;
    if (t.device != Device::cpu) {
      staging.resize(t.bytes());
      dst = staging.data();
    }
    // A tensor-parallel rank reads only its part: a hyperslab of the logical tensor.
    hid_t file_space = H5S_ALL, mem_space = H5S_ALL;
    std::optional<H5> slab;
    if (p.sharded() && p.numel > 0) {
      const size_t d = p.split == Split::rows ? 0 : 1;
      std::vector<hsize_t> start(dims.size(), 0), count(dims);
      start[d] = hsize_t(p.split_first);
      count[d] = hsize_t(p.local_shape[d]);
      if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0)
        h5fail(cat(where, ": cannot select this rank's part of ", p.name));
      slab.emplace(H5Screate_simple(int(count.size()), count.data(), nullptr), H5Sclose, "H5Screate");
      file_space = space.get();
      mem_space = slab->get();
    }
    if (p.numel > 0 && H5Dread(dset.get(), memory_type(t), mem_space, file_space, H5P_DEFAULT, dst) < 0)
      h5fail(cat(where, ": cannot read ", p.name));
    if (t.device != Device::cpu) copy_to_device(t.data, dst, t.bytes());
  }
}

// ---- files

// Writes bytes to a new file and fsyncs it (inside a temporary directory: no rename needed).
void write_synced(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) fail(cat("cannot create ", path, ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      fail(cat("cannot write ", path, ": ", std::strerror(err)));
    }
    done += size_t(n);
  }
  bool ok = ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) fail(cat("fsync ", path, ": ", std::strerror(err)));
}

void slow_down_for_tests() {
  static const long ms = [] {
    const char* v = std::getenv("TFM_TEST_SLOW_CHECKPOINT_MS");
    return v ? std::atol(v) : 0L;
  }();
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

Json model_to_json(const ModelConfig& m) {
  Json j = Json::object();
  j.set("vocab_size", m.vocab_size);
  j.set("d_model", m.d_model);
  j.set("d_ff", m.d_ff);
  j.set("heads", m.heads);
  j.set("encoder_layers", m.encoder_layers);
  j.set("decoder_layers", m.decoder_layers);
  j.set("dropout", m.dropout);
  j.set("attention_dropout", m.attention_dropout);
  j.set("relu_dropout", m.relu_dropout);
  j.set("label_smoothing", m.label_smoothing);
  j.set("layer_norm_eps", m.layer_norm_eps);
  j.set("norm", to_string(m.norm));
  j.set("share_embeddings", to_string(m.sharing));
  return j;
}

ModelConfig model_from_json(const Json& j, const std::string& where) {
  auto w = [&](const char* key) { return cat(where, ": model.", key); };
  ModelConfig m;
  m.vocab_size = j.at("vocab_size", w("vocab_size")).as_int(w("vocab_size"));
  m.d_model = j.at("d_model", w("d_model")).as_int(w("d_model"));
  m.d_ff = j.at("d_ff", w("d_ff")).as_int(w("d_ff"));
  m.heads = j.at("heads", w("heads")).as_int(w("heads"));
  m.encoder_layers = j.at("encoder_layers", w("encoder_layers")).as_int(w("encoder_layers"));
  m.decoder_layers = j.at("decoder_layers", w("decoder_layers")).as_int(w("decoder_layers"));
  m.dropout = j.at("dropout", w("dropout")).as_number(w("dropout"));
  m.attention_dropout = j.at("attention_dropout", w("attention_dropout")).as_number(w("attention_dropout"));
  m.relu_dropout = j.at("relu_dropout", w("relu_dropout")).as_number(w("relu_dropout"));
  m.label_smoothing = j.at("label_smoothing", w("label_smoothing")).as_number(w("label_smoothing"));
  m.layer_norm_eps = j.at("layer_norm_eps", w("layer_norm_eps")).as_number(w("layer_norm_eps"));
  m.norm = parse_norm_placement(j.at("norm", w("norm")).as_string(w("norm")));
  m.sharing = parse_embedding_sharing(j.at("share_embeddings", w("share_embeddings")).as_string(w("share_embeddings")));
  return m;
}

std::string state_to_json(const TrainingState& s) {
  Json j = Json::object();
  j.set("format_version", kCheckpointFormatVersion);
  j.set("step", s.step);
  j.set("seed", std::to_string(s.seed));
  j.set("data_position", s.data_position);
  j.set("loss_scale", s.loss_scale);
  j.set("loss_scale_good_steps", s.loss_scale_good_steps);
  j.set("skipped_steps", s.skipped_steps);
  j.set("tokenizer_file", s.tokenizer_file);
  Json from = Json::array();
  for (const std::string& a : s.averaged_from) from.push_back(a);
  j.set("averaged_from", from);
  j.set("model", model_to_json(s.model));
  return j.dump();
}

TrainingState state_from_json(const std::string& text, const std::string& where) {
  Json j = Json::parse(text, where);
  auto w = [&](const char* key) { return cat(where, ": ", key); };
  int64_t version = j.at("format_version", w("format_version")).as_int(w("format_version"));
  TFM_CHECK(version == kCheckpointFormatVersion, where, ": checkpoint format_version ", version,
            " is not supported (this build reads ", kCheckpointFormatVersion, ")");
  TrainingState s;
  s.step = j.at("step", w("step")).as_int(w("step"));
  const std::string& seed = j.at("seed", w("seed")).as_string(w("seed"));
  try {
    size_t used = 0;
    s.seed = std::stoull(seed, &used);
    TFM_CHECK(used == seed.size(), "trailing characters");
  } catch (const std::exception&) {
    fail(cat(where, ": seed '", seed, "' is not an unsigned integer"));
  }
  s.data_position = j.at("data_position", w("data_position")).as_string(w("data_position"));
  s.loss_scale = j.at("loss_scale", w("loss_scale")).as_number(w("loss_scale"));
  s.loss_scale_good_steps = j.at("loss_scale_good_steps", w("loss_scale_good_steps")).as_int(w("loss_scale_good_steps"));
  s.skipped_steps = j.at("skipped_steps", w("skipped_steps")).as_int(w("skipped_steps"));
  s.tokenizer_file = j.at("tokenizer_file", w("tokenizer_file")).as_string(w("tokenizer_file"));
  if (j.has("averaged_from"))
    for (const Json& a : j.at("averaged_from", w("averaged_from")).as_array(w("averaged_from")))
      s.averaged_from.push_back(a.as_string(w("averaged_from[]")));
  s.model = model_from_json(j.at("model", w("model")), where);
  return s;
}

// Writes every file of a checkpoint into `dir` (which must not exist), manifest last, all fsynced.
void write_checkpoint_files(const std::string& dir, const CheckpointWrite& what) {
  TFM_CHECK(what.params && what.params->allocated(), "save_checkpoint: no parameters to save");
  TFM_CHECK(what.params->tp_size() == 1, "save_checkpoint: checkpoints hold logical tensors; "
            "gather the tensor-parallel shards first (trainer/sharding.h)");
  const ParameterStore& params = *what.params;
  std::error_code ec;
  TFM_CHECK(fs::create_directory(dir, ec) && !ec, "cannot create checkpoint directory ", dir, ": ",
            ec ? ec.message() : "it already exists");
  QuietHdf5 quiet;
  std::vector<std::pair<std::string, std::string>> files;  // name, sha256
  auto done = [&](const std::string& name) {
    const std::string path = dir + "/" + name;
    fsync_path(path);
    files.emplace_back(name, sha256_file(path));
    slow_down_for_tests();
  };

  {
    const std::string path = dir + "/" + kModelFile;
    H5 file = create_h5(path);
    write_int_attribute(file.get(), "format_version", kCheckpointFormatVersion, path);
    write_int_attribute(file.get(), "step", what.state.step, path);
    write_tensors(file.get(), "", params, nullptr, path);
    file.close(cat("cannot finish writing ", path, " (disk full?)"));
    done(kModelFile);
  }
  if (what.adam_m.defined() || what.adam_v.defined()) {
    TFM_CHECK(what.adam_m.defined() && what.adam_v.defined(), "save_checkpoint: give both Adam moments or neither");
    TFM_CHECK(what.adam_m.numel() == params.flat_numel() && what.adam_v.numel() == params.flat_numel(),
              "save_checkpoint: Adam moments hold ", what.adam_m.numel(), " and ", what.adam_v.numel(),
              " elements, the parameters ", params.flat_numel());
    const std::string path = dir + "/" + kOptimizerFile;
    H5 file = create_h5(path);
    write_int_attribute(file.get(), "format_version", kCheckpointFormatVersion, path);
    write_int_attribute(file.get(), "step", what.state.step, path);
    {
      H5 m = create_group(file.get(), "adam_m", path);
      write_tensors(m.get(), "", params, &what.adam_m, path + ":/adam_m");
    }
    {
      H5 v = create_group(file.get(), "adam_v", path);
      write_tensors(v.get(), "", params, &what.adam_v, path + ":/adam_v");
    }
    file.close(cat("cannot finish writing ", path, " (disk full?)"));
    done(kOptimizerFile);
  }
  TrainingState state = what.state;
  if (!what.tokenizer_path.empty()) {
    if (state.tokenizer_file.empty()) state.tokenizer_file = fs::path(what.tokenizer_path).filename().string();
    TFM_CHECK(state.tokenizer_file.find('/') == std::string::npos && state.tokenizer_file != kManifest,
              "save_checkpoint: bad tokenizer file name '", state.tokenizer_file, "'");
    write_synced(dir + "/" + state.tokenizer_file, read_file(what.tokenizer_path));
    done(state.tokenizer_file);
  } else {
    state.tokenizer_file.clear();
  }
  write_synced(dir + "/" + kConfigFile, state.config);
  done(kConfigFile);
  write_synced(dir + "/" + kStateFile, state_to_json(state));
  done(kStateFile);

  Json manifest = Json::object();
  manifest.set("format_version", kCheckpointFormatVersion);
  manifest.set("step", state.step);
  Json listed = Json::object();
  for (const auto& [name, sha] : files) listed.set(name, sha);
  manifest.set("files", listed);
  write_synced(dir + "/" + kManifest, manifest.dump());
  fsync_path(dir);
}

// step-NNNNNNN → N; -1 for any other name (temporaries, `latest`, strays).
int64_t step_of_name(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0) return -1;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

bool process_alive(long pid) { return ::kill(pid_t(pid), 0) == 0 || errno != ESRCH; }

// Removes the leftovers of writers that died: step-N.tmp-<pid>, step-N.old-<pid> and
// step-N.deleting-<pid> whose pid no longer runs (or is this process: a save that failed).
void remove_stale_temporaries(const std::string& ckdir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(ckdir, ec)) {
    const std::string name = entry.path().filename().string();
    size_t dot = name.rfind('.');
    if (name.compare(0, 5, "step-") != 0 || dot == std::string::npos) continue;
    size_t dash = name.find('-', dot);
    if (dash == std::string::npos) continue;
    const std::string kind = name.substr(dot + 1, dash - dot - 1);
    if (kind != "tmp" && kind != "old" && kind != "deleting") continue;
    char* end = nullptr;
    long pid = std::strtol(name.c_str() + dash + 1, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    if (pid == long(::getpid()) || !process_alive(pid)) fs::remove_all(entry.path(), ec);
  }
}

std::string pid_suffix(const char* kind) { return cat(".", kind, "-", ::getpid()); }

// Puts the complete directory `tmp` at `final`, atomically replacing an existing one.
void install_directory(const std::string& tmp, const std::string& final) {
  std::error_code ec;
  if (!fs::exists(final, ec)) {
    rename_durable(tmp, final);
    return;
  }
  fsync_path(tmp);
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final.c_str(), RENAME_EXCHANGE) == 0) {
    fsync_path(parent_dir(final));
    fs::remove_all(tmp, ec);  // now holds the replaced checkpoint
    return;
  }
  // A file system without RENAME_EXCHANGE: move the old one aside first (a crash in between
  // leaves it as step-N.old-<pid>, which the next save removes).
  const std::string old = final + pid_suffix("old");
  rename_durable(final, old);
  rename_durable(tmp, final);
  fs::remove_all(old, ec);
}

// Deletes the oldest complete checkpoints so that `keep` remain among those not newer than the
// one `latest` now names (newer ones belong to an abandoned continuation: left to the user).
void prune(const std::string& ckdir, int64_t latest_step, int keep) {
  std::vector<std::pair<int64_t, std::string>> older;
  for (const auto& [step, path] : list_checkpoints(fs::path(ckdir).parent_path().string()))
    if (step < latest_step) older.emplace_back(step, path);
  const int64_t excess = int64_t(older.size()) - (keep - 1);
  std::error_code ec;
  for (int64_t i = 0; i < excess; ++i) {
    // Renamed first, so a deletion cut short never leaves a partial step-N/ that looks complete.
    const std::string doomed = older[size_t(i)].second + pid_suffix("deleting");
    if (std::rename(older[size_t(i)].second.c_str(), doomed.c_str()) == 0) fs::remove_all(doomed, ec);
  }
}

std::vector<std::pair<std::string, std::string>> manifest_files(const std::string& dir) {
  const std::string path = dir + "/" + kManifest;
  std::error_code ec;
  TFM_CHECK(fs::is_directory(dir, ec), "checkpoint ", dir, " does not exist");
  TFM_CHECK(fs::exists(path, ec), dir, " is not a complete tfm checkpoint (no ", kManifest, ")");
  Json j = Json::parse(read_file(path), path);
  int64_t version = j.at("format_version", path).as_int(path + ": format_version");
  TFM_CHECK(version == kCheckpointFormatVersion, path, ": checkpoint format_version ", version,
            " is not supported (this build reads ", kCheckpointFormatVersion, ")");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, sha] : j.at("files", path).members()) {
    TFM_CHECK(name.find('/') == std::string::npos && name != ".." && name != ".", path,
              ": bad file name '", name, "'");
    out.emplace_back(name, sha.as_string(cat(path, ": files.", name)));
  }
  return out;
}

void verify_file(const std::string& dir, const std::string& name, const std::string& sha) {
  const std::string path = dir + "/" + name;
  std::error_code ec;
  TFM_CHECK(fs::exists(path, ec), "checkpoint ", dir, " is missing ", name, " (listed in its manifest)");
  std::string got = sha256_file(path);
  TFM_CHECK(got == sha, "checkpoint file ", path, " is corrupt: its SHA-256 checksum is ", got,
            ", the manifest records ", sha);
}

bool listed(const std::vector<std::pair<std::string, std::string>>& files, const std::string& name) {
  for (const auto& f : files)
    if (f.first == name) return true;
  return false;
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%07lld", static_cast<long long>(step));
  return buf;
}

std::string save_checkpoint(const std::string& run_dir, const CheckpointWrite& what, int keep) {
  TFM_CHECK(keep >= 1, "--keep: must be at least 1, got ", keep);
  TFM_CHECK(what.state.step >= 0, "save_checkpoint: negative step ", what.state.step);
  const std::string ckdir = (fs::path(run_dir) / "checkpoints").string();
  std::error_code ec;
  fs::create_directories(ckdir, ec);
  TFM_CHECK(!ec, "cannot create ", ckdir, ": ", ec.message());
  remove_stale_temporaries(ckdir);

  const std::string name = checkpoint_name(what.state.step);
  const std::string final = ckdir + "/" + name;
  const std::string tmp = final + pid_suffix("tmp");
  try {
    write_checkpoint_files(tmp, what);
    install_directory(tmp, final);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  write_file_atomic(ckdir + "/latest", name + "\n");
  prune(ckdir, what.state.step, keep);
  return final;
}

void save_checkpoint_dir(const std::string& path, const CheckpointWrite& what) {
  std::error_code ec;
  TFM_CHECK(!fs::exists(path, ec), path, " already exists; refusing to overwrite it");
  std::string parent = parent_dir(path);
  fs::create_directories(parent, ec);
  TFM_CHECK(!ec, "cannot create ", parent, ": ", ec.message());
  const std::string tmp = path + pid_suffix("tmp");
  try {
    fs::remove_all(tmp, ec);
    write_checkpoint_files(tmp, what);
    rename_durable(tmp, path);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir) {
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(ckdir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(ckdir, ec)) {
    int64_t step = step_of_name(entry.path().filename().string());
    if (step >= 0 && fs::exists(entry.path() / kManifest, ec)) out.emplace_back(step, entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string latest_checkpoint(const std::string& run_dir) {
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  const std::string pointer = (ckdir / "latest").string();
  std::error_code ec;
  if (!fs::exists(pointer, ec)) {
    auto all = list_checkpoints(run_dir);
    TFM_CHECK(all.empty(), "run directory ", run_dir, " has checkpoints (newest: ", all.empty() ? "" : all.back().second,
              ") but no ", pointer, "; resume from one explicitly with --resume PATH, or start over "
              "with --resume none --overwrite");
    return "";
  }
  std::string name = read_file(pointer);
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  TFM_CHECK(!name.empty() && name.find('/') == std::string::npos, pointer,
            " is malformed: expected one line naming a checkpoint directory, got '", name, "'");
  const std::string dir = (ckdir / name).string();
  TFM_CHECK(fs::exists(fs::path(dir) / kManifest, ec), pointer, " names ", name, ", but ", dir,
            fs::exists(dir, ec) ? " is incomplete (no manifest.json)" : " does not exist",
            "; resume from another checkpoint with --resume PATH, or start over with --resume none "
            "--overwrite");
  return dir;
}

std::vector<std::pair<std::string, std::string>> checkpoint_files(const std::string& checkpoint_dir) {
  return manifest_files(checkpoint_dir);
}

void verify_checkpoint(const std::string& checkpoint_dir) {
  for (const auto& [name, sha] : manifest_files(checkpoint_dir)) verify_file(checkpoint_dir, name, sha);
}

TrainingState read_checkpoint_state(const std::string& checkpoint_dir) {
  auto files = manifest_files(checkpoint_dir);
  for (const char* name : {kStateFile, kConfigFile}) {
    bool found = false;
    for (const auto& [n, sha] : files) {
      if (n != name) continue;
      verify_file(checkpoint_dir, n, sha);
      found = true;
    }
    TFM_CHECK(found, "checkpoint ", checkpoint_dir, ": its manifest does not list ", name);
  }
  const std::string state_path = checkpoint_dir + "/" + kStateFile;
  TrainingState s = state_from_json(read_file(state_path), state_path);
  s.config = read_file(checkpoint_dir + "/" + kConfigFile);
  return s;
}

TrainingState load_checkpoint(const std::string& checkpoint_dir, ParameterStore& params,
                              const Tensor* adam_m, const Tensor* adam_v, bool verify) {
  TFM_CHECK(params.allocated(), "load_checkpoint: parameters not allocated");
  if (verify) verify_checkpoint(checkpoint_dir);
  TrainingState state = read_checkpoint_state(checkpoint_dir);
  auto files = manifest_files(checkpoint_dir);
  TFM_CHECK(listed(files, kModelFile), "checkpoint ", checkpoint_dir, ": its manifest does not list ", kModelFile);
  QuietHdf5 quiet;
  {
    const std::string path = checkpoint_dir + "/" + kModelFile;
    H5 file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, cat("cannot open ", path));
    read_tensors(file.get(), path, params, nullptr);
  }
  if (adam_m || adam_v) {
    TFM_CHECK(listed(files, kOptimizerFile), "checkpoint ", checkpoint_dir, " has no optimizer state (",
              kOptimizerFile, "; e.g. an average of checkpoints): it can be evaluated but not resumed");
    const std::string path = checkpoint_dir + "/" + kOptimizerFile;
    H5 file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, cat("cannot open ", path));
    const std::pair<const Tensor*, const char*> moments[] = {{adam_m, "adam_m"}, {adam_v, "adam_v"}};
    for (const auto& [flat, group_name] : moments) {
      if (!flat) continue;
      TFM_CHECK(flat->numel() == params.flat_numel(), "load_checkpoint: ", group_name, " holds ",
                flat->numel(), " elements, the parameters ", params.flat_numel());
      H5 group(H5Gopen2(file.get(), group_name, H5P_DEFAULT), H5Gclose,
               cat(path, ": cannot open group /", group_name));
      read_tensors(group.get(), cat(path, ":/", group_name), params, flat);
    }
  }
  return state;
}

std::string model_structure_difference(const ModelConfig& a, const ModelConfig& b) {
  auto diff = [](const char* name, const auto& x, const auto& y) {
    return x == y ? std::string() : cat(name, " ", x, " vs ", y);
  };
  for (std::string d : {diff("vocab_size", a.vocab_size, b.vocab_size), diff("d_model", a.d_model, b.d_model),
                        diff("d_ff", a.d_ff, b.d_ff), diff("heads", a.heads, b.heads),
                        diff("encoder_layers", a.encoder_layers, b.encoder_layers),
                        diff("decoder_layers", a.decoder_layers, b.decoder_layers),
                        diff("norm", std::string(to_string(a.norm)), std::string(to_string(b.norm))),
                        diff("share_embeddings", std::string(to_string(a.sharing)), std::string(to_string(b.sharing))),
                        diff("layer_norm_eps", a.layer_norm_eps, b.layer_norm_eps)})
    if (!d.empty()) return d;
  return "";
}

}  // namespace tfm
