// ModelConfig: the shape and regularisation of the Transformer (Vaswani et al. 2017, Table 3),
// with the paper's presets. Training hyper-parameters (optimiser, schedule) live in trainer/.
#pragma once
#include <cstdint>
#include <string>

namespace tfm {

enum class NormPlacement { post, pre };           // post: LayerNorm(x + Dropout(Sublayer(x))), the paper's
enum class EmbeddingSharing { all, tgt, none };   // which of {source emb, target emb, pre-softmax} share one matrix

struct ModelConfig {
  int64_t vocab_size = 0;      // joint source–target vocabulary (from the tokenizer)
  int64_t d_model = 512;
  int64_t d_ff = 2048;
  int64_t heads = 8;
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  double dropout = 0.1;            // residual sub-layer outputs and embeddings + positions (§5.4)
  double attention_dropout = 0.0;  // on attention probabilities (not in the paper; off by default)
  double relu_dropout = 0.0;       // inside the FFN after ReLU (not in the paper; off by default)
  double label_smoothing = 0.1;    // ε_ls (§5.4)
  double layer_norm_eps = 1e-5;
  NormPlacement norm = NormPlacement::post;
  EmbeddingSharing sharing = EmbeddingSharing::all;

  int64_t head_dim() const { return d_model / heads; }
  // Throws tfm::Error naming the offending option (as the CLI spells it) when inconsistent.
  void validate() const;
  std::string summary() const;
};

// "tiny" (tests, the demo, CPU), "base" and "big" (the paper's). Unknown names throw, listing
// the known ones. vocab_size is left for the caller to set.
ModelConfig preset(const std::string& name);

const char* to_string(NormPlacement n);
const char* to_string(EmbeddingSharing s);
NormPlacement parse_norm_placement(const std::string& s);
EmbeddingSharing parse_embedding_sharing(const std::string& s);

}  // namespace tfm
