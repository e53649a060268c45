// The whole model: parameter names and counts, a finite-difference check of the loss gradient
// for every parameter tensor in double, and determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/elementwise/elementwise.h"
#include "model/transformer.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

ModelConfig tiny_config(NormPlacement norm, EmbeddingSharing sharing, double dropout) {
  ModelConfig c;
  c.vocab_size = 11;
  c.d_model = 8;
  c.d_ff = 12;
  c.heads = 2;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = dropout;
  c.attention_dropout = dropout;
  c.relu_dropout = dropout;
  c.label_smoothing = 0.1;
  c.norm = norm;
  c.sharing = sharing;
  return c;
}

// Two pairs of different lengths, so padding and both masks matter.
Batch tiny_batch() {
  return make_batch({{4, 5, 6, 7, 8}, {9, 10}}, {{5, 4, 9}, {10, 6, 7, 8, 4, 5}});
}

// Puts every parameter (biases and norms too) at a random, non-special point.
void randomize(ParameterStore& store, uint64_t seed) {
  testing::fill_uniform<double>(store.values(), seed, -0.5, 0.5);
}

struct GradCase {
  NormPlacement norm;
  EmbeddingSharing sharing;
  double dropout;
};

class TransformerGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(TransformerGradient, EveryParameterTensorMatchesFiniteDifferences) {
  const GradCase gc = GetParam();
  Transformer model(tiny_config(gc.norm, gc.sharing, gc.dropout));
  ParameterStore& store = model.params();
  store.allocate(DType::f64);
  randomize(store, 7);
  Context ctx;
  Arena arena;
  Batch batch = tiny_batch();
  const uint64_t seed = 1234;
  const double scale = 1.0 / double(batch.tgt_tokens());

  fill_zero(ctx, store.grads());
  model.forward_backward(ctx, arena, batch, scale, seed);

  // The loss as the trainer sees it: Σ loss · scale, same dropout masks.
  auto loss = [&] { return model.training_loss(ctx, arena, batch, seed).loss_sum * scale; };
  const double* analytic_grads = store.grads().as<double>();

  for (size_t i = 0; i < store.size(); ++i) {
    const ParamInfo& p = store.info(int(i));
    Tensor value = store.value(int(i));
    // Check up to 6 elements spread over the tensor, first and last included.
    const int64_t stride = std::max<int64_t>(1, (p.numel - 1) / 5);
    for (int64_t e = 0; e < p.numel; e += stride) {
      Tensor one = value.view({p.numel}).rows(e, 1);
      double numeric = testing::numeric_gradient(one, loss, 1e-5)[0];
      double analytic = analytic_grads[p.offset + e];
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-5 * std::abs(numeric))
          << p.name << " element " << e;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, TransformerGradient,
    ::testing::Values(GradCase{NormPlacement::post, EmbeddingSharing::all, 0.0},
                      GradCase{NormPlacement::post, EmbeddingSharing::all, 0.2},
                      GradCase{NormPlacement::pre, EmbeddingSharing::none, 0.0},
                      GradCase{NormPlacement::post, EmbeddingSharing::tgt, 0.2}),
    [](const auto& info) {
      return std::string(to_string(info.param.norm)) + "_" + to_string(info.param.sharing) +
             (info.param.dropout > 0 ? "_dropout" : "");
    });

TEST(Transformer, ParameterNamesAndShapesFollowPyTorchConventions) {
  ModelConfig c = preset("base");
  c.vocab_size = 37000;
  Transformer model(c);
  const ParameterStore& s = model.params();
  auto shape = [&](const std::string& n) { return s.info(s.index(n)).shape; };
  EXPECT_EQ(shape("embed.weight"), (std::vector<int64_t>{37000, 512}));
  EXPECT_EQ(shape("encoder.layers.3.self_attn.q_proj.weight"), (std::vector<int64_t>{512, 512}));
  EXPECT_EQ(shape("decoder.layers.0.cross_attn.out_proj.bias"), (std::vector<int64_t>{512}));
  EXPECT_EQ(shape("decoder.layers.5.ffn.fc1.weight"), (std::vector<int64_t>{2048, 512}));
  EXPECT_EQ(shape("decoder.layers.5.ffn.fc2.weight"), (std::vector<int64_t>{512, 2048}));
  EXPECT_EQ(shape("encoder.layers.0.norm1.weight"), (std::vector<int64_t>{512}));
  EXPECT_EQ(shape("decoder.layers.2.norm3.bias"), (std::vector<int64_t>{512}));
  EXPECT_FALSE(s.contains("encoder.norm.weight"));  // post-norm has no final norm
  EXPECT_THROW(s.index("decoder.layers.6.ffn.fc1.weight"), Error);

  // Count from the paper's architecture: per encoder layer 4 projections (D² + D) + FFN
  // (2·D·d_ff + d_ff + D) + 2 norms (2·D); the decoder has 8 projections and 3 norms.
  const int64_t d = 512, ff = 2048, v = 37000;
  const int64_t attn = 4 * (d * d + d), ffn = 2 * d * ff + ff + d, norm = 2 * d;
  const int64_t expected = v * d + 6 * (attn + ffn + 2 * norm) + 6 * (2 * attn + ffn + 3 * norm);
  EXPECT_EQ(s.total_numel(), expected);
}

TEST(Transformer, PresetsAndValidationNameTheOption) {
  EXPECT_EQ(preset("big").d_model, 1024);
  EXPECT_EQ(preset("tiny").encoder_layers, 2);
  try {
    preset("huge");
    FAIL() << "unknown preset accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--preset"), std::string::npos) << e.what();
  }
  ModelConfig c = preset("tiny");
  c.vocab_size = 100;
  c.heads = 3;  // 256 is not divisible by 3
  try {
    c.validate();
    FAIL() << "d_model not divisible by heads accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--heads"), std::string::npos) << e.what();
  }
}

TEST(Transformer, SameSeedSameLossBitForBit) {
  auto run = [] {
    ModelConfig c = tiny_config(NormPlacement::post, EmbeddingSharing::all, 0.1);
    Transformer model(c);
    model.params().allocate(DType::f32);
    model.params().initialize(42);
    Context ctx;
    Arena arena;
    std::vector<double> losses;
    for (int step = 0; step < 3; ++step) {
      LossStats st = model.forward_backward(ctx, arena, tiny_batch(), 0.1, 99 + step);
      losses.push_back(st.loss_sum);
    }
    return losses;
  };
  std::vector<double> a = run(), b = run();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "pass " << i;
}

TEST(Transformer, ArenaStopsAllocatingAfterTheFirstStepOfAShape) {
  Transformer model(tiny_config(NormPlacement::post, EmbeddingSharing::all, 0.1));
  model.params().allocate(DType::f32);
  model.params().initialize(1);
  Context ctx;
  Arena arena;
  model.forward_backward(ctx, arena, tiny_batch(), 0.1, 1);
  size_t after_first = arena.overflow_allocations();
  for (int i = 0; i < 3; ++i) model.forward_backward(ctx, arena, tiny_batch(), 0.1, 2 + i);
  EXPECT_EQ(arena.overflow_allocations(), after_first);
}

// The data-parallel reducer starts a bucket's all-reduce when backward reports its parameters:
// every parameter must be reported exactly once, and only when its gradient is final (nothing
// added to it after the report), whatever the norm placement and embedding sharing.
TEST(Transformer, GradientReadyHookReportsEveryParameterOnceWhenFinal) {
  for (NormPlacement norm : {NormPlacement::post, NormPlacement::pre}) {
    for (EmbeddingSharing sharing : {EmbeddingSharing::all, EmbeddingSharing::tgt, EmbeddingSharing::none}) {
      Transformer model(tiny_config(norm, sharing, 0.1));
      ParameterStore& store = model.params();
      store.allocate(DType::f32);
      store.initialize(3);
      std::vector<int> reports(store.size(), 0);
      std::vector<std::vector<float>> at_report(store.size());
      model.set_gradient_ready_hook([&](int i) {
        ++reports[size_t(i)];
        const Tensor g = store.grad(i);
        at_report[size_t(i)].assign(g.as<float>(), g.as<float>() + g.numel());
      });
      Context ctx;
      Arena arena;
      model.forward_backward(ctx, arena, tiny_batch(), 0.1, 7);
      for (size_t i = 0; i < store.size(); ++i) {
        const std::string& name = store.info(int(i)).name;
        EXPECT_EQ(reports[i], 1) << name << " (" << to_string(norm) << ", " << to_string(sharing) << ")";
        const Tensor g = store.grad(int(i));
        EXPECT_EQ(at_report[i], std::vector<float>(g.as<float>(), g.as<float>() + g.numel()))
            << name << " changed after it was reported (" << to_string(norm) << ", "
            << to_string(sharing) << ")";
      }
    }
  }
}

}  // namespace
}  // namespace tfm
