// base/log.h: leveled logging to stderr as text or one JSON object per line.
//
//   KV_LOG(kInfo) << "restored " << n << " blocks";
//
// Thread-safety: every function and macro here may be called from any thread; lines are
// written whole.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

#include "kvault/base/result.h"

namespace kvault {

enum class LogLevel { kDebug = 0, kInfo, kWarning, kError };
enum class LogFormat { kText, kJson };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void SetLogFormat(LogFormat format);
Result<LogLevel> ParseLogLevel(std::string_view name);
Result<LogFormat> ParseLogFormat(std::string_view name);

// Writes one line now.
void LogLine(LogLevel level, std::string_view message);

namespace internal {
class LogMessage {
 public:
  explicit LogMessage(LogLevel level) : level_(level) {}
  ~LogMessage() { LogLine(level_, stream_.str()); }
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace internal

}  // namespace kvault

#define KV_LOG(level)                                        \
  if (::kvault::LogLevel::level < ::kvault::GetLogLevel()) { \
  } else                                                     \
    ::kvault::internal::LogMessage(::kvault::LogLevel::level).stream()
