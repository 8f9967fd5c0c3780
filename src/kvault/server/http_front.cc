#include "kvault/server/http_front.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <optional>
#include <thread>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvault/base/log.h"
#include "kvault/server/connection_threads.h"

namespace kvault::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 64 * 1024;
// Bytes held toward either side before the front stops reading the other: bounds a
// connection's memory and passes back-pressure on (a client that stops reading its stream
// stalls httplib's writes, which then time out and cancel the generation, as without a front).
constexpr size_t kMaxBuffered = 1 << 20;
// A client that takes nothing of its response for this long is gone.
constexpr double kWriteStallS = 60;
// However long a refused client goes on sending (a 50 MB body after its 413), the front
// stops reading it after this.
constexpr double kMaxLingerS = 30;

Clock::duration Seconds(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// A complete response that closes the connection, with an OpenAI-shaped body.
std::string ErrorResponse(const HttpError& error) {
  const std::string body = DumpJson(ErrorJson(error));
  return "HTTP/1.1 " + std::to_string(error.status) + " " + ReasonPhrase(error.status) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

HttpError FrontError(int status, std::string message) {
  HttpError error = HttpErrorForStatus(status);
  error.message = std::move(message);
  return error;
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Sends what the socket takes now; the number of bytes, 0 if it would block, -1 on error.
ssize_t SendSome(int fd, const std::string& bytes) {
  const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) return n;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

int ConnectBackend(const std::string& address) {
  // httplib's notation: a leading '@' names an abstract socket (a NUL first byte).
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (address.empty() || address.size() > sizeof(addr.sun_path)) return -1;
  std::memcpy(addr.sun_path, address.data(), address.size());
  if (address[0] == '@') addr.sun_path[0] = '\0';
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), length) != 0 ||
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One client connection, relayed to its own backend connection, on one thread.
class Relay {
 public:
  Relay(int client, const FrontLimits& limits, const std::string& backend, int stop_fd)
      : client_(client), limits_(limits), backend_(backend), stop_fd_(stop_fd) {}
  ~Relay() {
    CloseFd(client_);
    CloseFd(up_);
  }
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  void Run();

 private:
  enum class Phase {
    kHead,         // reading a request head (or waiting for one)
    kBodyLength,   // forwarding a Content-Length body
    kBodyChunked,  // forwarding a chunked body
    kDraining,     // an error is due: earlier responses still come from the backend
    kLinger,       // the error is queued; reading what the client still sends, then closing
    kDone,
  };

  bool ReadsClient() const;
  void ReadClient();
  void WriteClient(Clock::time_point now);
  void ReadBackend();
  void WriteBackend();
  void Process(Clock::time_point now);
  void Fail(const HttpError& error, bool mid_request);
  void CheckDeadlines(Clock::time_point now);
  int PollTimeoutMs(Clock::time_point now) const;
  void BackendClosed();
  void QueueToClient(std::string_view bytes);

  int client_;
  int up_ = -1;
  const FrontLimits& limits_;
  const std::string& backend_;
  const int stop_fd_;

  Phase phase_ = Phase::kHead;
  std::string in_;         // from the client, not yet forwarded
  std::string to_up_;      // to the backend
  std::string to_client_;  // to the client
  size_t lf_scanned_ = 0;  // bytes of in_ already searched for a line feed
  size_t recheck_at_ = 0;  // HeadParse::recheck_at of the last incomplete head
  uint64_t body_left_ = 0;
  std::optional<ChunkedBodyScanner> chunked_;
  std::string error_response_;  // with kDraining: what follows the backend's last response

  bool client_eof_ = false;
  bool up_write_shut_ = false;
  bool shut_up_when_flushed_ = false;
  bool close_when_flushed_ = false;  // the backend closed: flush the client's side and end
  bool client_write_shut_ = false;
  bool forwarded_any_ = false;
  bool stopping_ = false;

  Clock::time_point opened_ = Clock::now();
  Clock::time_point last_client_progress_ = opened_;
  std::optional<Clock::time_point> head_deadline_;
  std::optional<Clock::time_point> body_deadline_;
  std::optional<Clock::time_point> linger_deadline_;
  Clock::time_point linger_started_;
};

bool Relay::ReadsClient() const {
  if (client_eof_) return false;
  if (phase_ == Phase::kLinger) return true;
  if (phase_ == Phase::kDraining || phase_ == Phase::kDone || close_when_flushed_) return false;
  return in_.size() < kMaxBuffered && to_up_.size() < kMaxBuffered;
}

void Relay::ReadClient() {
  char buffer[kReadChunk];
  const ssize_t n = ::recv(client_, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    phase_ = Phase::kDone;  // reset by the peer: nobody to answer
    return;
  }
  if (n == 0) {
    client_eof_ = true;
    if (phase_ == Phase::kLinger) {
      linger_deadline_ = Clock::now();  // nothing more to read: close once the error is sent
    } else if (up_ >= 0) {
      // What was forwarded is still answered; then the backend sees the client's side close
      // (a running stream is cancelled, as when the client talks to httplib directly).
      shut_up_when_flushed_ = true;
    } else {
      phase_ = Phase::kDone;
    }
    return;
  }
  if (phase_ == Phase::kLinger) {  // discarded; the client gets a while more for the rest
    if (linger_deadline_) {
      const Clock::time_point now = Clock::now();
      linger_deadline_ =
          std::min(now + Seconds(limits_.linger_s), linger_started_ + Seconds(kMaxLingerS));
    }
    return;
  }
  in_.append(buffer, static_cast<size_t>(n));
}

void Relay::WriteClient(Clock::time_point now) {
  const ssize_t n = SendSome(client_, to_client_);
  if (n < 0) {
    phase_ = Phase::kDone;  // the client is gone; closing the backend side cancels its work
    return;
  }
  if (n > 0) {
    to_client_.erase(0, static_cast<size_t>(n));
    last_client_progress_ = now;
  }
}

void Relay::ReadBackend() {
  char buffer[kReadChunk];
  const ssize_t n = ::recv(up_, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    BackendClosed();
    return;
  }
  QueueToClient(std::string_view(buffer, static_cast<size_t>(n)));
}

void Relay::QueueToClient(std::string_view bytes) {
  // The stall clock starts when something is first waiting, not at the last write.
  if (to_client_.empty()) last_client_progress_ = Clock::now();
  to_client_.append(bytes);
}

void Relay::WriteBackend() {
  const ssize_t n = SendSome(up_, to_up_);
  if (n < 0) {
    BackendClosed();
    return;
  }
  to_up_.erase(0, static_cast<size_t>(n));
}

// httplib closed its side (keep-alive limits, Connection: close, its shutdown) or failed:
// every response it wrote is in to_client_.
void Relay::BackendClosed() {
  CloseFd(up_);
  to_up_.clear();
  if (phase_ == Phase::kDraining) {
    QueueToClient(error_response_);
    phase_ = Phase::kLinger;
  } else if (phase_ != Phase::kLinger) {
    close_when_flushed_ = true;
  }
}

void Relay::Fail(const HttpError& error, bool mid_request) {
  KV_LOG(kDebug) << "http: " << error.status << " " << error.message;
  in_.clear();
  // No deadline of the request outlives it (a past one would keep poll from sleeping).
  head_deadline_.reset();
  body_deadline_.reset();
  if (mid_request || up_ < 0) {
    // The backend has part of this request: it must not see the rest, nor answer it.
    CloseFd(up_);
    to_up_.clear();
    QueueToClient(ErrorResponse(error));
    phase_ = Phase::kLinger;
    return;
  }
  // Earlier requests on this connection may still be answered: their responses go first.
  error_response_ = ErrorResponse(error);
  shut_up_when_flushed_ = true;
  phase_ = Phase::kDraining;
}

void Relay::Process(Clock::time_point now) {
  while (true) {
    switch (phase_) {
      case Phase::kHead: {
        if (in_.empty() || close_when_flushed_) return;
        if (!head_deadline_) {
          head_deadline_ = now + Seconds(limits_.head_timeout_s);
        }
        const bool new_lf =
            std::memchr(in_.data() + lf_scanned_, '\n', in_.size() - lf_scanned_) != nullptr;
        lf_scanned_ = in_.size();
        if (!new_lf && in_.size() < recheck_at_) return;
        const HeadParse parse = ParseRequestHead(in_, limits_.head);
        if (parse.state == HeadParse::State::kNeedMore) {
          recheck_at_ = parse.recheck_at;
          return;
        }
        if (parse.state == HeadParse::State::kError) {
          Fail(parse.error, /*mid_request=*/false);
          return;
        }
        if (up_ < 0 && !up_write_shut_) up_ = ConnectBackend(backend_);
        if (up_ < 0) {
          Fail(FrontError(503, "the server is not accepting requests"), false);
          return;
        }
        const RequestHead& head = parse.head;
        to_up_ += head.forwarded;
        in_.erase(0, head.size);
        lf_scanned_ = 0;
        recheck_at_ = 0;
        head_deadline_.reset();
        forwarded_any_ = true;
        if (head.body == BodyFraming::kNone) continue;
        body_deadline_ = now + Seconds(limits_.body_timeout_s);
        if (head.body == BodyFraming::kLength) {
          body_left_ = head.content_length;
          phase_ = Phase::kBodyLength;
        } else {
          chunked_.emplace(limits_.head.max_body_bytes);
          phase_ = Phase::kBodyChunked;
        }
        continue;
      }
      case Phase::kBodyLength: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(body_left_, in_.size()));
        to_up_.append(in_, 0, take);
        in_.erase(0, take);
        body_left_ -= take;
        if (body_left_ > 0) return;
        body_deadline_.reset();
        phase_ = Phase::kHead;
        continue;
      }
      case Phase::kBodyChunked: {
        const size_t taken = chunked_->Consume(in_);
        to_up_.append(in_, 0, taken);
        in_.erase(0, taken);
        if (chunked_->failed()) {
          Fail(chunked_->error(), /*mid_request=*/true);
          return;
        }
        if (!chunked_->done()) return;
        body_deadline_.reset();
        phase_ = Phase::kHead;
        continue;
      }
      default: return;
    }
  }
}

void Relay::CheckDeadlines(Clock::time_point now) {
  if (head_deadline_ && now >= *head_deadline_ && phase_ == Phase::kHead) {
    head_deadline_.reset();
    Fail(FrontError(408, "the request head did not arrive within " +
                             std::to_string(static_cast<int>(limits_.head_timeout_s)) + " s"),
         false);
  }
  if (body_deadline_ && now >= *body_deadline_ &&
      (phase_ == Phase::kBodyLength || phase_ == Phase::kBodyChunked)) {
    body_deadline_.reset();
    Fail(FrontError(408, "the request body did not arrive within " +
                             std::to_string(static_cast<int>(limits_.body_timeout_s)) + " s"),
         true);
  }
  const bool idle = phase_ == Phase::kHead && in_.empty() && up_ < 0;
  if (idle &&
      (stopping_ || (!forwarded_any_ && now >= opened_ + Seconds(limits_.idle_timeout_s)))) {
    phase_ = Phase::kDone;
  }
  if (linger_deadline_ && now >= *linger_deadline_ && to_client_.empty()) phase_ = Phase::kDone;
  if (!to_client_.empty() && now > last_client_progress_ + Seconds(kWriteStallS)) {
    phase_ = Phase::kDone;
  }
}

int Relay::PollTimeoutMs(Clock::time_point now) const {
  std::optional<Clock::time_point> next;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  consider(head_deadline_);
  consider(body_deadline_);
  if (to_client_.empty()) consider(linger_deadline_);  // then the stall clock applies
  // Only while it applies: a past deadline that no longer applies would make poll return at
  // once, forever (1,000 slow heads past 5 s spun every core until their 408).
  if (!forwarded_any_ && phase_ == Phase::kHead && in_.empty() && up_ < 0) {
    consider(opened_ + Seconds(limits_.idle_timeout_s));
  }
  if (!to_client_.empty()) {
    consider(last_client_progress_ + Seconds(kWriteStallS));
  }
  if (!next) return -1;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void Relay::Run() {
  while (phase_ != Phase::kDone) {
    pollfd fds[3] = {{client_, 0, 0}, {up_, 0, 0}, {stopping_ ? -1 : stop_fd_, POLLIN, 0}};
    if (ReadsClient()) fds[0].events |= POLLIN;
    if (!to_client_.empty()) fds[0].events |= POLLOUT;
    if (up_ >= 0) {
      if (to_client_.size() < kMaxBuffered) fds[1].events |= POLLIN;
      if (!to_up_.empty()) fds[1].events |= POLLOUT;
    }
    const int ready = ::poll(fds, 3, PollTimeoutMs(Clock::now()));
    if (ready < 0 && errno != EINTR) break;
    const Clock::time_point now = Clock::now();
    if ((fds[2].revents & POLLIN) != 0) stopping_ = true;
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && ReadsClient()) ReadClient();
    // A hang-up while the front is not reading the client would wake poll forever.
    if ((fds[0].revents & (POLLHUP | POLLERR)) != 0 && !ReadsClient()) phase_ = Phase::kDone;
    if (up_ >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) ReadBackend();
    if (phase_ == Phase::kDone) break;
    Process(now);
    // Written as soon as there is something (not a poll round later): a streamed token goes
    // out in the same wake-up that read it.
    if (up_ >= 0 && !to_up_.empty()) WriteBackend();
    if (!to_client_.empty()) WriteClient(now);
    if (phase_ == Phase::kDone) break;
    if (up_ >= 0 && shut_up_when_flushed_ && to_up_.empty() && !up_write_shut_) {
      ::shutdown(up_, SHUT_WR);
      up_write_shut_ = true;
    }
    if (up_ < 0 && phase_ == Phase::kDraining) {  // nothing to drain
      QueueToClient(error_response_);
      phase_ = Phase::kLinger;
    }
    if (phase_ == Phase::kLinger && to_client_.empty() && !client_write_shut_) {
      // The error is out: half-close so the client reads it, and read what it still sends
      // (closing with unread bytes would reset the connection and lose the response).
      ::shutdown(client_, SHUT_WR);
      client_write_shut_ = true;
      linger_started_ = now;
      if (!linger_deadline_) linger_deadline_ = now + Seconds(limits_.linger_s);
    }
    if (close_when_flushed_ && to_client_.empty()) break;
    if (client_eof_ && up_ < 0 && to_client_.empty() && phase_ != Phase::kLinger) break;
    CheckDeadlines(now);
  }
}

}  // namespace

struct HttpFront::Impl {
  FrontLimits limits;
  int listen_fd = -1;
  int port = 0;
  int stop_pipe[2] = {-1, -1};
  std::atomic<bool> stopped{false};
  std::string backend_address;
  std::unique_ptr<ConnectionThreads> threads;

  ~Impl() {
    CloseFd(listen_fd);
    CloseFd(stop_pipe[0]);
    CloseFd(stop_pipe[1]);
  }
};

HttpFront::HttpFront(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpFront::~HttpFront() {
  Stop();
  if (impl_->threads) impl_->threads->shutdown();
}

Result<std::unique_ptr<HttpFront>> HttpFront::Bind(const std::string& host, int port,
                                                   const FrontLimits& limits) {
  auto impl = std::make_unique<Impl>();
  impl->limits = limits;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc =
      ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) {
    return UnavailableError("cannot listen on " + host + ":" + service + ": " + ::gai_strerror(rc));
  }
  for (addrinfo* ai = found; ai != nullptr && impl->listen_fd < 0; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 512) == 0) {
      impl->listen_fd = fd;
    } else {
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (impl->listen_fd < 0) {
    return UnavailableError("cannot listen on " + host + ":" + service +
                            " (address in use or not available)");
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof(bound);
  ::getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&bound), &bound_length);
  impl->port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  if (::pipe2(impl->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    return ErrnoError("pipe", errno);
  }
  static std::atomic<int> counter{0};
  impl->backend_address = "@kvault-http-" + std::to_string(::getpid()) + "-" +
                          std::to_string(counter.fetch_add(1)) + "-" + std::to_string(impl->port);
  impl->threads = std::make_unique<ConnectionThreads>(limits.max_connections);
  return std::unique_ptr<HttpFront>(new HttpFront(std::move(impl)));
}

int HttpFront::port() const { return impl_->port; }

const std::string& HttpFront::backend_address() const { return impl_->backend_address; }

void HttpFront::Serve() {
  Impl& impl = *impl_;
  while (!impl.stopped.load()) {
    pollfd fds[2] = {{impl.listen_fd, POLLIN, 0}, {impl.stop_pipe[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if ((fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(impl.listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      // Out of descriptors: let running connections end instead of spinning.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const bool queued = impl.threads->enqueue(
        [&impl, fd] { Relay(fd, impl.limits, impl.backend_address, impl.stop_pipe[0]).Run(); });
    if (!queued) {
      // Over the cap: answered at once, not queued behind the others.
      const std::string response = ErrorResponse(
          FrontError(503, "too many open connections (--max-connections " +
                              std::to_string(impl.limits.max_connections) + "); retry shortly"));
      SendSome(fd, response);
      ::close(fd);
    }
  }
  CloseFd(impl.listen_fd);
  impl.threads->shutdown();
}

void HttpFront::Stop() {
  if (impl_->stopped.exchange(true)) return;
  const char byte = 1;
  [[maybe_unused]] const ssize_t n = ::write(impl_->stop_pipe[1], &byte, 1);
}

}  // namespace kvault::server
