#include "data/shard.h"

#include <hdf5.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "data/files.h"
#include "data/hdf5_errors.h"
#include "kernels/core/check.h"

namespace tfm {

namespace {

constexpr hsize_t kTokenChunk = 1 << 16;   // elements: 128 KiB of uint16 per chunk
constexpr hsize_t kOffsetChunk = 1 << 13;  // elements: 64 KiB of int64 per chunk
constexpr size_t kFlushTokens = 1 << 20;   // writer buffers this many ids per side before a write
constexpr size_t kFlushOffsets = 1 << 15;

using Handle = Hdf5Handle;

Handle make_scalar_space() { return Handle(H5Screate(H5S_SCALAR), H5Sclose, "H5Screate"); }

void write_int_attribute(hid_t loc, const char* name, int64_t value, const std::string& where) {
  Handle space = make_scalar_space();
  Handle attr(H5Acreate2(loc, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Aclose, cat(where, ": cannot create attribute ", name));
  if (H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0) h5fail(cat(where, ": cannot write attribute ", name));
}

void write_string_attribute(hid_t loc, const char* name, const std::string& value,
                            const std::string& where) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space = make_scalar_space();
  Handle attr(H5Acreate2(loc, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
               H5Aclose, cat(where, ": cannot create attribute ", name));
  std::string padded = value;
  padded.resize(std::max<size_t>(1, value.size()), '\0');
  if (H5Awrite(attr.get(), type.get(), padded.data()) < 0) h5fail(cat(where, ": cannot write attribute ", name));
}

Handle open_attribute(hid_t loc, const char* name, const std::string& where) {
  htri_t exists = H5Aexists(loc, name);
  if (exists < 0) h5fail(cat(where, ": cannot look up attribute ", name));
  if (exists == 0) fail(cat(where, ": missing attribute '", name, "' (not a tfm shard?)"));
  return Handle(H5Aopen(loc, name, H5P_DEFAULT), H5Aclose, cat(where, ": cannot open attribute ", name));
}

int64_t read_int_attribute(hid_t loc, const char* name, const std::string& where) {
  Handle attr = open_attribute(loc, name, where);
  Handle type(H5Aget_type(attr.get()), H5Tclose, "H5Aget_type");
  Handle space(H5Aget_space(attr.get()), H5Sclose, "H5Aget_space");
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1) {
    fail(cat(where, ": attribute '", name, "' is not a scalar integer"));
  }
  int64_t value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0) h5fail(cat(where, ": cannot read attribute ", name));
  return value;
}

std::string read_string_attribute(hid_t loc, const char* name, const std::string& where) {
  Handle attr = open_attribute(loc, name, where);
  Handle type(H5Aget_type(attr.get()), H5Tclose, "H5Aget_type");
  if (H5Tget_class(type.get()) != H5T_STRING) fail(cat(where, ": attribute '", name, "' is not a string"));
  std::string value;
  if (H5Tis_variable_str(type.get()) > 0) {  // as h5py writes str attributes
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose, "H5Tcopy");
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* p = nullptr;
    if (H5Aread(attr.get(), mem.get(), &p) < 0) h5fail(cat(where, ": cannot read attribute ", name));
    if (p) value = p;
    H5free_memory(p);
  } else {
    size_t size = H5Tget_size(type.get());
    value.assign(size, '\0');
    if (H5Aread(attr.get(), type.get(), value.data()) < 0) h5fail(cat(where, ": cannot read attribute ", name));
    value.resize(std::strlen(value.c_str()));  // drop NUL padding
  }
  return value;
}

// Object creation properties without timestamps, so identical content gives identical bytes.
Handle untimed(hid_t cls) {
  Handle p(H5Pcreate(cls), H5Pclose, "H5Pcreate");
  H5Pset_obj_track_times(p.get(), false);
  return p;
}

// A growable 1-D dataset being appended to.
struct AppendDataset {
  Handle dataset;
  hid_t mem_type = -1;
  hsize_t size = 0;
  std::string name;  // "/src/tokens", for messages

  void create(hid_t group, const char* leaf, hid_t file_type, hid_t memory_type, hsize_t chunk,
              const std::string& shard, const std::string& full_name) {
    name = full_name;
    mem_type = memory_type;
    hsize_t dims = 0, maxdims = H5S_UNLIMITED;
    Handle space(H5Screate_simple(1, &dims, &maxdims), H5Sclose, "H5Screate_simple");
    Handle dcpl = untimed(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl.get(), 1, &chunk);
    dataset = Handle(H5Dcreate2(group, leaf, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                     H5Dclose, cat(shard, ": cannot create dataset ", name));
  }

  void append(const void* data, hsize_t n, const std::string& shard) {
    if (n == 0) return;
    hsize_t new_size = size + n;
    if (H5Dset_extent(dataset.get(), &new_size) < 0) h5fail(cat(shard, ": cannot extend ", name));
    Handle file_space(H5Dget_space(dataset.get()), H5Sclose, "H5Dget_space");
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &size, nullptr, &n, nullptr);
    Handle mem_space(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple");
    if (H5Dwrite(dataset.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0) {
      h5fail(cat(shard, ": cannot write ", name, " (disk full?)"));
    }
    size = new_size;
  }
};

}  // namespace

std::string shard_file_name(const std::string& split, int64_t k, int64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05lld-of-%05lld.h5", static_cast<long long>(k), static_cast<long long>(n));
  return split + buf;
}

// ---------------------------------------------------------------------------------- writer

struct ShardWriter::Impl {
  std::string path, tmp_path, tokenizer_sha256;
  int64_t vocab_size = 0;
  bool small = true;  // uint16 tokens
  Handle file;
  AppendDataset tokens[2], offsets[2];
  std::vector<uint16_t> tok16[2];
  std::vector<int32_t> tok32[2];
  std::vector<int64_t> off[2];
  int64_t total[2] = {0, 0};  // tokens written or buffered per side: the next offset
  ShardStats stats;
  bool finished = false;

  void flush() {
    for (int s = 0; s < 2; ++s) {
      if (small) {
        tokens[s].append(tok16[s].data(), tok16[s].size(), tmp_path);
        tok16[s].clear();
      } else {
        tokens[s].append(tok32[s].data(), tok32[s].size(), tmp_path);
        tok32[s].clear();
      }
      offsets[s].append(off[s].data(), off[s].size(), tmp_path);
      off[s].clear();
    }
  }
};

ShardWriter::ShardWriter(std::string path, int64_t vocab_size, std::string tokenizer_sha256)
    : impl_(std::make_unique<Impl>()) {
  QuietHdf5 quiet;
  Impl& m = *impl_;
  TFM_CHECK(vocab_size > 0 && vocab_size <= int64_t(INT32_MAX), "shard ", path, ": bad vocab_size ", vocab_size);
  m.path = std::move(path);
  m.tmp_path = m.path + ".tmp";
  m.vocab_size = vocab_size;
  m.tokenizer_sha256 = std::move(tokenizer_sha256);
  m.small = tokens_fit_uint16(vocab_size);
  Handle fcpl = untimed(H5P_FILE_CREATE);
  m.file = Handle(H5Fcreate(m.tmp_path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT), H5Fclose,
                  cat("cannot create shard ", m.tmp_path));
  for (int s = 0; s < 2; ++s) {
    const char* side = side_name(Side(s));
    Handle gcpl = untimed(H5P_GROUP_CREATE);
    Handle group(H5Gcreate2(m.file.get(), side, H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose,
                  cat(m.tmp_path, ": cannot create group ", side));
    m.tokens[s].create(group.get(), "tokens", m.small ? H5T_STD_U16LE : H5T_STD_I32LE,
                       m.small ? H5T_NATIVE_UINT16 : H5T_NATIVE_INT32, kTokenChunk, m.tmp_path,
                       cat("/", side, "/tokens"));
    m.offsets[s].create(group.get(), "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, kOffsetChunk, m.tmp_path,
                        cat("/", side, "/offsets"));
    m.off[s].push_back(0);
  }
}

ShardWriter::~ShardWriter() {
  if (!impl_ || impl_->finished) return;
  QuietHdf5 quiet;
  impl_->file.reset();
  std::remove(impl_->tmp_path.c_str());
}

void ShardWriter::add(const int32_t* src, int64_t src_len, const int32_t* tgt, int64_t tgt_len) {
  Impl& m = *impl_;
  TFM_CHECK(!m.finished, "shard ", m.path, ": add after finish");
  const int32_t* ids[2] = {src, tgt};
  int64_t lens[2] = {src_len, tgt_len};
  for (int s = 0; s < 2; ++s) {
    for (int64_t k = 0; k < lens[s]; ++k) {
      int32_t id = ids[s][k];
      if (id < 0 || id >= m.vocab_size) {
        fail(cat("shard ", m.path, ": example ", m.stats.num_examples, " ", side_name(Side(s)), " token ", k,
                 " = ", id, " outside the vocabulary [0, ", m.vocab_size, ")"));
      }
      if (m.small) m.tok16[s].push_back(uint16_t(id));
      else m.tok32[s].push_back(id);
    }
    m.total[s] += lens[s];
    m.off[s].push_back(m.total[s]);
  }
  ++m.stats.num_examples;
  m.stats.src_tokens += src_len;
  m.stats.tgt_tokens += tgt_len;
  size_t buffered = m.small ? m.tok16[0].size() + m.tok16[1].size() : m.tok32[0].size() + m.tok32[1].size();
  if (buffered >= kFlushTokens || m.off[0].size() >= kFlushOffsets) {
    QuietHdf5 quiet;
    m.flush();
  }
}

ShardStats ShardWriter::finish() {
  Impl& m = *impl_;
  TFM_CHECK(!m.finished, "shard ", m.path, ": finish called twice");
  {
    QuietHdf5 quiet;
    m.flush();
    write_int_attribute(m.file.get(), "format_version", kShardFormatVersion, m.tmp_path);
    write_int_attribute(m.file.get(), "num_examples", m.stats.num_examples, m.tmp_path);
    write_int_attribute(m.file.get(), "vocab_size", m.vocab_size, m.tmp_path);
    write_string_attribute(m.file.get(), "tokenizer_sha256", m.tokenizer_sha256, m.tmp_path);
    for (auto& d : m.tokens) d.dataset.reset();
    for (auto& d : m.offsets) d.dataset.reset();
    if (H5Fflush(m.file.get(), H5F_SCOPE_LOCAL) < 0) h5fail(cat(m.tmp_path, ": cannot flush (disk full?)"));
    // Closed by hand (not by the handle) so that a failing close is reported.
    m.file.close(cat(m.tmp_path, ": cannot close"));
  }
  rename_durable(m.tmp_path, m.path);
  m.finished = true;
  return m.stats;
}

const ShardStats& ShardWriter::stats() const { return impl_->stats; }

// ---------------------------------------------------------------------------------- reader

struct ShardFile::Impl {
  std::string path;
  Handle file;
  Handle tokens[2], offsets[2];
  bool small[2] = {true, true};  // uint16 on disk
  int64_t num_tokens[2] = {0, 0};
  int64_t num_examples = 0, vocab_size = 0;
  std::string tokenizer_sha256;
  mutable std::vector<uint16_t> scratch;

  void read(hid_t dataset, hid_t mem_type, int64_t first, int64_t count, int64_t limit, void* out,
            const std::string& name) const {
    if (first < 0 || count < 0 || first + count > limit) {
      fail(cat("shard ", path, ": read of ", name, "[", first, ", ", first + count, ") outside [0, ", limit, ")"));
    }
    if (count == 0) return;
    hsize_t start = hsize_t(first), n = hsize_t(count);
    Handle file_space(H5Dget_space(dataset), H5Sclose, "H5Dget_space");
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &n, nullptr);
    Handle mem_space(H5Screate_simple(1, &n, nullptr), H5Sclose, "H5Screate_simple");
    if (H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
      h5fail(cat("shard ", path, ": cannot read ", name, "[", first, ", ", first + count, ") (truncated or corrupt file?)"));
    }
  }
};

ShardFile::ShardFile(std::string path) : impl_(std::make_unique<Impl>()) {
  QuietHdf5 quiet;
  Impl& m = *impl_;
  m.path = std::move(path);
  const std::string where = cat("shard ", m.path);
  std::FILE* probe = std::fopen(m.path.c_str(), "rb");
  if (!probe) fail(cat(where, ": cannot open (missing?)"));
  std::fclose(probe);
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "H5Pcreate");
#if H5_VERSION_GE(1, 10, 7)
  // Shards are immutable once renamed into place, so read locks buy nothing — and on network file
  // systems without flock (common on clusters) they make every open fail.
  H5Pset_file_locking(fapl.get(), false, true);
#endif
  m.file = Handle(H5Fopen(m.path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose,
                  cat(where, ": cannot open as HDF5 (truncated or corrupt?)"));
  int64_t version = read_int_attribute(m.file.get(), "format_version", where);
  if (version != kShardFormatVersion) {
    fail(cat(where, ": format_version is ", version, "; this tfm reads format_version ", kShardFormatVersion));
  }
  m.num_examples = read_int_attribute(m.file.get(), "num_examples", where);
  m.vocab_size = read_int_attribute(m.file.get(), "vocab_size", where);
  m.tokenizer_sha256 = read_string_attribute(m.file.get(), "tokenizer_sha256", where);
  if (m.num_examples < 0) fail(cat(where, ": negative num_examples ", m.num_examples));
  if (m.vocab_size <= 0 || m.vocab_size > int64_t(INT32_MAX)) fail(cat(where, ": bad vocab_size ", m.vocab_size));

  for (int s = 0; s < 2; ++s) {
    for (int which = 0; which < 2; ++which) {
      std::string name = cat("/", side_name(Side(s)), which == 0 ? "/tokens" : "/offsets");
      htri_t exists = H5Lexists(m.file.get(), cat("/", side_name(Side(s))).c_str(), H5P_DEFAULT);
      if (exists > 0) exists = H5Lexists(m.file.get(), name.c_str(), H5P_DEFAULT);
      if (exists <= 0) fail(cat(where, ": missing dataset ", name));
      Handle ds(H5Dopen2(m.file.get(), name.c_str(), H5P_DEFAULT), H5Dclose,
                 cat(where, ": cannot open dataset ", name));
      Handle space(H5Dget_space(ds.get()), H5Sclose, "H5Dget_space");
      if (H5Sget_simple_extent_ndims(space.get()) != 1) fail(cat(where, ": dataset ", name, " is not 1-D"));
      hsize_t dims = 0;
      H5Sget_simple_extent_dims(space.get(), &dims, nullptr);
      Handle type(H5Dget_type(ds.get()), H5Tclose, "H5Dget_type");
      bool is_int = H5Tget_class(type.get()) == H5T_INTEGER;
      size_t size = H5Tget_size(type.get());
      bool is_signed = is_int && H5Tget_sign(type.get()) == H5T_SGN_2;
      if (which == 0) {
        if (is_int && size == 2 && !is_signed) m.small[s] = true;
        else if (is_int && size == 4 && is_signed) m.small[s] = false;
        else fail(cat(where, ": dataset ", name, " must be uint16 or int32"));
        m.num_tokens[s] = int64_t(dims);
        m.tokens[s] = std::move(ds);
      } else {
        if (!(is_int && size == 8 && is_signed)) fail(cat(where, ": dataset ", name, " must be int64"));
        if (int64_t(dims) != m.num_examples + 1) {
          fail(cat(where, ": dataset ", name, " has ", dims, " entries; num_examples + 1 = ", m.num_examples + 1));
        }
        m.offsets[s] = std::move(ds);
      }
    }
  }
}

ShardFile::~ShardFile() {
  if (!impl_) return;
  QuietHdf5 quiet;
  for (auto& h : impl_->tokens) h.reset();
  for (auto& h : impl_->offsets) h.reset();
  impl_->file.reset();
}

const std::string& ShardFile::path() const { return impl_->path; }
int64_t ShardFile::num_examples() const { return impl_->num_examples; }
int64_t ShardFile::vocab_size() const { return impl_->vocab_size; }
const std::string& ShardFile::tokenizer_sha256() const { return impl_->tokenizer_sha256; }
int64_t ShardFile::num_tokens(Side side) const { return impl_->num_tokens[int(side)]; }

void ShardFile::read_offsets(Side side, int64_t first, int64_t count, int64_t* out) const {
  QuietHdf5 quiet;
  const Impl& m = *impl_;
  m.read(m.offsets[int(side)].get(), H5T_NATIVE_INT64, first, count, m.num_examples + 1, out,
         cat("/", side_name(side), "/offsets"));
}

void ShardFile::read_tokens(Side side, int64_t first, int64_t count, int32_t* out) const {
  QuietHdf5 quiet;
  const Impl& m = *impl_;
  int s = int(side);
  std::string name = cat("/", side_name(side), "/tokens");
  if (m.small[s]) {
    // Read the stored uint16 and widen here: cheaper than HDF5's generic type conversion.
    m.scratch.resize(size_t(count));
    m.read(m.tokens[s].get(), H5T_NATIVE_UINT16, first, count, m.num_tokens[s], m.scratch.data(), name);
    const uint16_t* in = m.scratch.data();
    uint16_t worst = 0;
    for (int64_t k = 0; k < count; ++k) {
      out[k] = in[k];
      worst = std::max(worst, in[k]);
    }
    if (count > 0 && worst >= m.vocab_size) {
      fail(cat("shard ", m.path, ": ", name, "[", first, ", ", first + count, ") holds id ", worst,
               " outside the vocabulary [0, ", m.vocab_size, ")"));
    }
  } else {
    m.read(m.tokens[s].get(), H5T_NATIVE_INT32, first, count, m.num_tokens[s], out, name);
    for (int64_t k = 0; k < count; ++k) {
      if (out[k] < 0 || out[k] >= m.vocab_size) {
        fail(cat("shard ", m.path, ": ", name, "[", first + k, "] = ", out[k], " outside the vocabulary [0, ",
                 m.vocab_size, ")"));
      }
    }
  }
}

}  // namespace tfm
