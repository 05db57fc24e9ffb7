// Stand-in: see ../README.md. Held only through smart pointers made by libtorch.
#pragma once

namespace gloo {
namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport
} // namespace gloo
