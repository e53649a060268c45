#include "model/config.h"

#include "kernels/core/check.h"

namespace tfm {

void ModelConfig::validate() const {
  TFM_CHECK(vocab_size > 4, "--vocab-size: need more than the 4 special tokens, got ", vocab_size);
  TFM_CHECK(d_model > 0, "--d-model must be positive, got ", d_model);
  TFM_CHECK(d_ff > 0, "--d-ff must be positive, got ", d_ff);
  TFM_CHECK(heads > 0, "--heads must be positive, got ", heads);
  TFM_CHECK(d_model % heads == 0, "--d-model (", d_model, ") must be divisible by --heads (", heads,
            ")");
  TFM_CHECK(d_model % 2 == 0, "--d-model must be even for sinusoidal positions, got ", d_model);
  TFM_CHECK(encoder_layers > 0, "--encoder-layers must be positive, got ", encoder_layers);
  TFM_CHECK(decoder_layers > 0, "--decoder-layers must be positive, got ", decoder_layers);
  auto rate = [](double p, const char* opt) {
    TFM_CHECK(p >= 0.0 && p < 1.0, opt, " must be in [0, 1), got ", p);
  };
  rate(dropout, "--dropout");
  rate(attention_dropout, "--attention-dropout");
  rate(relu_dropout, "--relu-dropout");
  rate(label_smoothing, "--label-smoothing");
  TFM_CHECK(layer_norm_eps > 0, "--layer-norm-eps must be positive, got ", layer_norm_eps);
}

std::string ModelConfig::summary() const {
  return cat("d_model ", d_model, ", d_ff ", d_ff, ", heads ", heads, ", layers ", encoder_layers,
             "+", decoder_layers, ", vocab ", vocab_size, ", ", to_string(norm), "-norm, shared ",
             to_string(sharing), ", dropout ", dropout, ", label smoothing ", label_smoothing);
}

ModelConfig preset(const std::string& name) {
  ModelConfig c;
  if (name == "tiny") {
    c.d_model = 256;
    c.d_ff = 1024;
    c.heads = 4;
    c.encoder_layers = c.decoder_layers = 2;
  } else if (name == "base") {
    // The defaults above are the paper's base model.
  } else if (name == "big") {
    c.d_model = 1024;
    c.d_ff = 4096;
    c.heads = 16;
    c.dropout = 0.3;  // EN-DE big (Table 3); the paper used 0.1 for EN-FR
  } else {
    fail(cat("--preset: unknown preset '", name, "' (known: tiny, base, big)"));
  }
  return c;
}

const char* to_string(NormPlacement n) { return n == NormPlacement::post ? "post" : "pre"; }
const char* to_string(EmbeddingSharing s) {
  return s == EmbeddingSharing::all ? "all" : s == EmbeddingSharing::tgt ? "tgt" : "none";
}
NormPlacement parse_norm_placement(const std::string& s) {
  if (s == "post") return NormPlacement::post;
  if (s == "pre") return NormPlacement::pre;
  fail(cat("--norm: expected post or pre, got '", s, "'"));
}
EmbeddingSharing parse_embedding_sharing(const std::string& s) {
  if (s == "all") return EmbeddingSharing::all;
  if (s == "tgt") return EmbeddingSharing::tgt;
  if (s == "none") return EmbeddingSharing::none;
  fail(cat("--share-embeddings: expected all, tgt or none, got '", s, "'"));
}

}  // namespace tfm
