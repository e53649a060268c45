// Launch detection from faked environments, and the World this binary started in: under ctest
// it runs once plainly (a world of one that must not have touched MPI) and under mpirun.
#include "comm/world.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "comm/test_world.h"

namespace tfm::comm {
namespace {

GetEnv fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(DetectLaunch, PlainProcessIsAWorldOfOne) {
  LaunchInfo info = detect_launch(fake_env({{"HOME", "/root"}}));
  EXPECT_FALSE(info.launched());
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.size, 1);
}

TEST(DetectLaunch, OpenMpiMpirun) {
  LaunchInfo info = detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "8"},
                                            {"OMPI_COMM_WORLD_RANK", "5"},
                                            {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}));
  EXPECT_EQ(info.launcher, "Open MPI");
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.size, 8);
  EXPECT_EQ(info.local_rank, 1);
}

TEST(DetectLaunch, SrunWithPmixTakesSlurmsLocalId) {
  LaunchInfo info = detect_launch(fake_env({{"PMIX_RANK", "3"},
                                            {"SLURM_LOCALID", "3"},
                                            {"SLURM_STEP_NUM_TASKS", "16"},
                                            {"SLURM_PROCID", "3"}}));
  EXPECT_EQ(info.launcher, "PMIx");
  EXPECT_EQ(info.rank, 3);
  EXPECT_EQ(info.local_rank, 3);
}

TEST(DetectLaunch, HydraPmiWithLocalRankId) {
  LaunchInfo info =
      detect_launch(fake_env({{"PMI_RANK", "2"}, {"PMI_SIZE", "4"}, {"MPI_LOCALRANKID", "0"}}));
  EXPECT_EQ(info.launcher, "PMI");
  EXPECT_EQ(info.size, 4);
  EXPECT_EQ(info.local_rank, 0);
}

TEST(DetectLaunch, SrunStepWithoutPmi) {
  LaunchInfo info = detect_launch(
      fake_env({{"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_PROCID", "2"}, {"SLURM_LOCALID", "0"}}));
  EXPECT_EQ(info.launcher, "srun");
  EXPECT_EQ(info.rank, 2);
  EXPECT_EQ(info.size, 4);
  EXPECT_EQ(info.local_rank, 0);
}

TEST(DetectLaunch, BareSbatchScriptIsNotALaunch) {
  // The batch script itself runs once; only srun starts the tasks.
  LaunchInfo info = detect_launch(
      fake_env({{"SLURM_NTASKS", "8"}, {"SLURM_JOB_ID", "42"}, {"SLURM_PROCID", "0"}}));
  EXPECT_FALSE(info.launched());
}

TEST(DetectLaunch, TfmNoMpiWins) {
  LaunchInfo info = detect_launch(fake_env(
      {{"TFM_NO_MPI", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "1"}}));
  EXPECT_FALSE(info.launched());
}

TEST(DetectLaunch, MalformedVariableIsNamed) {
  try {
    detect_launch(fake_env({{"OMPI_COMM_WORLD_SIZE", "four"}, {"OMPI_COMM_WORLD_RANK", "0"}}));
    ADD_FAILURE() << "accepted OMPI_COMM_WORLD_SIZE=four";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("OMPI_COMM_WORLD_SIZE='four'"), std::string::npos)
        << e.what();
  }
}

TEST(ThreadLevel, ParsesItsNames) {
  for (ThreadLevel l :
       {ThreadLevel::single, ThreadLevel::funneled, ThreadLevel::serialized, ThreadLevel::multiple})
    EXPECT_EQ(parse_thread_level(thread_level_name(l)), l);
  EXPECT_THROW(parse_thread_level("many"), Error);
}

TEST(World, MatchesHowThisProcessWasStarted) {
  const World& world = testing::test_world();
  LaunchInfo launch = detect_launch();
  EXPECT_EQ(world.uses_mpi(), launch.launched());
  int initialized = 0;
  MPI_Initialized(&initialized);
  EXPECT_EQ(bool(initialized), world.uses_mpi());
  if (!world.uses_mpi()) {
    // Started plainly: a world of one that never called MPI_Init.
    EXPECT_EQ(world.rank(), 0);
    EXPECT_EQ(world.size(), 1);
    EXPECT_EQ(world.local_rank(), 0);
    EXPECT_EQ(world.comm(), MPI_COMM_NULL);
  } else {
    int rank = -1, size = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    EXPECT_EQ(world.rank(), rank);
    EXPECT_EQ(world.size(), size);
    EXPECT_EQ(world.rank(), launch.rank);
    EXPECT_EQ(world.size(), launch.size);
    if (launch.local_rank >= 0) {
      EXPECT_EQ(world.local_rank(), launch.local_rank);
    }
  }
  EXPECT_GE(world.local_rank(), 0);
  EXPECT_LT(world.local_rank(), world.local_size());
  EXPECT_LE(world.local_size(), world.size());
}

TEST(World, ProvidesTheRequestedThreadLevel) {
  const World& world = testing::test_world();
  if (!world.uses_mpi()) {
    EXPECT_EQ(world.thread_level(), ThreadLevel::multiple);
    return;
  }
  const char* asked = std::getenv("TFM_MPI_THREAD_LEVEL");
  ThreadLevel want = asked ? parse_thread_level(asked) : ThreadLevel::multiple;
  // Open MPI provides exactly what is asked up to multiple.
  EXPECT_EQ(world.thread_level(), want) << world.describe();
}

TEST(World, OnlyOnePerProcess) {
  try {
    World second;
    ADD_FAILURE() << "a second World was created";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tfm::comm
