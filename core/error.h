// The one exception type flashgrad throws, and the check macros that build its messages.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fg {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Raised when a device or host allocation cannot be satisfied; the message carries the
// requested size and the allocator's counters.
struct OutOfMemoryError : Error {
  using Error::Error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... R>
void append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... A>
std::string str(const A&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  return os.str();
}

}  // namespace fg

// FG_CHECK(cond, "op: what was wrong ", value, "; what to do")
#define FG_CHECK(COND, ...)                         \
  do {                                              \
    if (!(COND)) throw ::fg::Error(::fg::str(__VA_ARGS__)); \
  } while (0)
