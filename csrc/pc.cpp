#include "pc.h"

#include <string>

#include "common.h"

namespace cleann {

void pc(const PcParams& p, uint8_t* adjacency, int8_t* marks, PcResult& out) {
  if (p.uc_priority < kUcOverwrite || p.uc_priority > kUcStrongerStar)
    throw ArgumentError("uc_priority must be 0, 1, 2, 3 or 4, got " + std::to_string(p.uc_priority));
  check_skeleton_args(p.skeleton, adjacency);
  cpu::pc(p, adjacency, marks, out);
}

}  // namespace cleann
