// Tensor-parallel parameter layout: each rank's initial weights are exactly its slice of the
// TP = 1 model's (so TP = k starts from the same point as TP = 1), and scatter_logical /
// gather_logical (its single-rank form) move tensors between the layouts without loss.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "model/transformer.h"
#include "trainer/sharding.h"

namespace tfm {
namespace {

ModelConfig small_model() {
  ModelConfig c = preset("tiny");
  c.vocab_size = 48;
  c.d_model = 32;
  c.d_ff = 64;
  c.heads = 4;
  c.encoder_layers = c.decoder_layers = 1;
  return c;
}

std::vector<float> values_of(const ParameterStore& s) {
  const float* p = s.values().as<float>();
  return std::vector<float>(p, p + s.total_numel());
}

TEST(Sharding, EveryTensorParallelRankStartsFromItsSliceOfTheWholeModel) {
  for (EmbeddingSharing sharing : {EmbeddingSharing::all, EmbeddingSharing::none}) {
    ModelConfig cfg = small_model();
    cfg.sharing = sharing;
    Transformer whole(cfg);
    whole.params().allocate(DType::f32);
    whole.params().initialize(11);
    for (int k : {2, 4}) {
      for (int r = 0; r < k; ++r) {
        Transformer part(cfg, TensorParallel{r, k, nullptr});
        ParameterStore& p = part.params();
        p.allocate(DType::f32, Device::cpu, /*pad_multiple=*/3);
        p.initialize(11);
        ASSERT_EQ(p.flat_numel() % 3, 0);
        Buffer expected(DType::f32, {p.flat_numel()});
        std::memset(expected.tensor().data, 0, expected.tensor().bytes());
        scatter_logical(whole.params(), whole.params().values(), p, expected.tensor());
        const float* e = expected.tensor().as<float>();
        for (const ParamInfo& info : p.params())
          for (int64_t i = 0; i < info.numel; ++i)
            ASSERT_EQ(p.values().as<float>()[info.offset + i], e[info.offset + i])
                << info.name << " element " << i << " of TP rank " << r << " of " << k;
        // A sharded store holds 1/k of every split tensor, all of every replicated one.
        for (const ParamInfo& info : p.params()) {
          int64_t logical = 1;
          for (int64_t d : info.shape) logical *= d;
          EXPECT_EQ(info.numel * (info.sharded() ? k : 1), logical) << info.name;
        }
      }
    }
  }
}

TEST(Sharding, SplitsFollowMegatron) {
  Transformer part(small_model(), TensorParallel{1, 2, nullptr});
  const ParameterStore& p = part.params();
  auto split_of = [&](const std::string& name) { return p.info(p.index(name)).split; };
  EXPECT_EQ(split_of("encoder.layers.0.self_attn.q_proj.weight"), Split::rows);
  EXPECT_EQ(split_of("encoder.layers.0.self_attn.v_proj.bias"), Split::rows);
  EXPECT_EQ(split_of("encoder.layers.0.self_attn.out_proj.weight"), Split::cols);
  EXPECT_EQ(split_of("encoder.layers.0.self_attn.out_proj.bias"), Split::replicated);
  EXPECT_EQ(split_of("encoder.layers.0.ffn.fc1.weight"), Split::rows);
  EXPECT_EQ(split_of("encoder.layers.0.ffn.fc1.bias"), Split::rows);
  EXPECT_EQ(split_of("encoder.layers.0.ffn.fc2.weight"), Split::cols);
  EXPECT_EQ(split_of("encoder.layers.0.ffn.fc2.bias"), Split::replicated);
  EXPECT_EQ(split_of("encoder.layers.0.norm1.weight"), Split::replicated);
  EXPECT_EQ(split_of("embed.weight"), Split::rows);
  // Rank 1 of 2 holds the second half of the vocabulary and of the heads' rows.
  const ParamInfo& embed = p.info(p.index("embed.weight"));
  EXPECT_EQ(embed.local_shape, (std::vector<int64_t>{24, 32}));
  EXPECT_EQ(embed.split_first, 24);
  const ParamInfo& out = p.info(p.index("encoder.layers.0.self_attn.out_proj.weight"));
  EXPECT_EQ(out.local_shape, (std::vector<int64_t>{32, 16}));
  EXPECT_EQ(out.split_first, 16);
}

TEST(Sharding, GatherOfOneRankIsTheIdentityAndScatterInvertsIt) {
  Transformer whole(small_model());
  whole.params().allocate(DType::f32);
  whole.params().initialize(5);
  Transformer copy(small_model());
  copy.params().allocate(DType::f32, Device::cpu, 4);
  scatter_logical(whole.params(), whole.params().values(), copy.params(), copy.params().values());
  EXPECT_EQ(values_of(copy.params()), values_of(whole.params()));
  Transformer back(small_model());
  back.params().allocate(DType::f32);
  gather_logical(copy.params(), copy.params().values(), nullptr, back.params(), back.params().values());
  EXPECT_EQ(values_of(back.params()), values_of(whole.params()));
}

TEST(Sharding, RefusesAModelThatDoesNotSplit) {
  ModelConfig cfg = small_model();
  cfg.heads = 2;
  cfg.d_model = 32;
  try {
    Transformer t(cfg, TensorParallel{0, 4, nullptr});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--tp 4: the 2 attention heads (--heads)"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tfm
