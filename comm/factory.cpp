#include "comm/factory.h"

#include "comm/mpi_communicator.h"
#include "comm/self_communicator.h"
#include "comm/world.h"
#if defined(TFM_HAVE_NCCL)
#include "comm/nccl_communicator.h"
#endif

namespace tfm::comm {

bool nccl_compiled() {
#if defined(TFM_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(MPI_Comm comm, const std::string& name,
                                                Device device, const CommOptions& options) {
  if (comm == MPI_COMM_NULL)
    return std::make_unique<SelfCommunicator>(name, detail::world_rank(), device, options);
  GroupInfo g = mpi_group_info(comm, name);
  if (g.size() == 1)
    return std::make_unique<SelfCommunicator>(name, g.world_ranks[0], device, options);
  if (device == Device::cpu) return std::make_unique<MpiCommunicator>(comm, name, options);
#if defined(TFM_HAVE_NCCL)
  return std::make_unique<NcclCommunicator>(comm, name, options);
#else
  fail(cat("cuda communicator for ", g.describe(),
           ": this tfm was built without NCCL (install NCCL where CMake finds it, e.g. "
           "/usr/local/cuda, or set NCCL_HOME, and rebuild)"));
#endif
}

}  // namespace tfm::comm
