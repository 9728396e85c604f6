// Errors thrown by the library. Every error says what was expected, what was found, where, and
// (when there is one) what to do about it. Only programs catch and print them.
#pragma once

#include <sstream>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace seqgan {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, std::string hint = {})
      : std::runtime_error(compose(message, hint)), message_(message), hint_(std::move(hint)) {}

  const std::string& message() const noexcept { return message_; }
  const std::string& hint() const noexcept { return hint_; }

 private:
  static std::string compose(const std::string& message, const std::string& hint) {
    return hint.empty() ? message : message + "\n---> HINT: " + hint;
  }
  std::string message_;
  std::string hint_;
};

namespace detail {
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Concatenates its arguments with operator<<, e.g. str("expected ", n, " got ", m).
// A function object rather than a function: argument-dependent lookup then never pulls in
// c10::str (which takes the same arguments) when a torch type is among them.
struct StrFn {
  template <class... Args>
  std::string operator()(const Args&... args) const {
    return detail::cat(args...);
  }
};
inline constexpr StrFn str{};

// Bytes from a file (a key, a field, a name) as they go into a message: printable ASCII kept,
// every other byte as \xNN.
inline std::string printable(const void* data, size_t size) {
  static const char kHex[] = "0123456789abcdef";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string s;
  for (size_t i = 0; i < size; ++i) {
    if (p[i] >= 32 && p[i] < 127) {
      s += static_cast<char>(p[i]);
    } else {
      s += "\\x";
      s += kHex[p[i] >> 4];
      s += kHex[p[i] & 15];
    }
  }
  return s;
}

// A command stopped by SIGINT or SIGTERM (see install_stop_handlers in runtime.h). Not an Error:
// code that tolerates bad data (skip_bad_files) must not swallow it. Programs exit with
// 128 + signal() after cleaning up, as shells expect (130 for Ctrl-C, 143 for SIGTERM).
class Interrupted : public std::runtime_error {
 public:
  explicit Interrupted(int signal, const std::string& what) : std::runtime_error(what), signal_(signal) {}
  int signal() const noexcept { return signal_; }
  int exit_code() const noexcept { return 128 + signal_; }

 private:
  int signal_;
};

}  // namespace seqgan

// SEQGAN_CHECK(cond, parts...): throws seqgan::Error("<function>: <parts...>") when cond is false.
#define SEQGAN_CHECK(cond, ...)                                                             \
  do {                                                                                      \
    if (!(cond)) throw ::seqgan::Error(::seqgan::str(__func__, ": ", __VA_ARGS__)); \
  } while (0)

// SEQGAN_CHECK_HINT(cond, hint, parts...): the same, with a hint saying how to fix it.
#define SEQGAN_CHECK_HINT(cond, hint, ...)                                                   \
  do {                                                                                       \
    if (!(cond)) throw ::seqgan::Error(::seqgan::str(__func__, ": ", __VA_ARGS__), (hint)); \
  } while (0)
