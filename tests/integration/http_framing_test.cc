// End-to-end tests of how `kvault serve` reads requests off the wire (server/http_front.h):
// every malformed, oversized or too slow request gets exactly one proper response, and what
// is well formed (LF-only heads, chunked bodies, keep-alive requests) is served. Raw sockets,
// since an HTTP client library would not send what these tests send.
#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/server_process.h"
#include "tests/test_env.h"
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvault/base/json.h"

namespace kvault::testing {
namespace {

using Clock = std::chrono::steady_clock;

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  return fd;
}

void SendAll(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early (that is what some tests check)
    sent += static_cast<size_t>(n);
  }
}

// Everything the server sends until it closes the connection or `timeout_s` passes.
std::string ReadUntilClosed(int fd, double timeout_s = 20) {
  std::string received;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  char buffer[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<size_t>(n));
  }
  return received;
}

struct Response {
  int status = 0;
  std::string body;
};

// Splits a byte stream into responses (Content-Length framed, as every tested response is).
std::vector<Response> ParseResponses(const std::string& bytes) {
  std::vector<Response> responses;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t head_end = bytes.find("\r\n\r\n", pos);
    if (head_end == std::string::npos || bytes.compare(pos, 9, "HTTP/1.1 ") != 0) {
      responses.push_back({-1, bytes.substr(pos)});  // not a response: counted, and fails
      break;
    }
    Response response;
    response.status = std::stoi(bytes.substr(pos + 9, 3));
    const std::string head = bytes.substr(pos, head_end - pos);
    size_t length = 0;
    for (const std::string name : {"Content-Length: ", "content-length: "}) {
      const size_t at = head.find(name);
      if (at != std::string::npos) length = std::stoul(head.substr(at + name.size()));
    }
    response.body = bytes.substr(head_end + 4, length);
    pos = head_end + 4 + length;
    responses.push_back(std::move(response));
  }
  return responses;
}

bool IsOpenAiError(const std::string& body) {
  Result<Json> json = ParseJson(body);
  return json.ok() && json->contains("error") && (*json)["error"].contains("message") &&
         (*json)["error"].contains("type") && (*json)["error"].contains("code");
}

class HttpFramingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess({"--model", TestModelPath(), "--max-body-mb", "1",
                                 "--header-timeout", "2", "--body-timeout", "2"});
    ASSERT_TRUE(server_->ok()) << server_->log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Terminate(), 0);
    delete server_;
  }
  // Sends `request` on a new connection and returns the responses it got before the close.
  static std::vector<Response> Exchange(const std::string& request, bool close_after = true) {
    const int fd = Connect(server_->port());
    SendAll(fd, request);
    if (close_after) ::shutdown(fd, SHUT_WR);
    std::vector<Response> responses = ParseResponses(ReadUntilClosed(fd));
    ::close(fd);
    return responses;
  }
  static void ExpectOneError(const std::vector<Response>& responses, int status) {
    ASSERT_EQ(responses.size(), 1u);
    EXPECT_EQ(responses[0].status, status);
    EXPECT_TRUE(IsOpenAiError(responses[0].body)) << responses[0].body;
  }
  static inline ServerProcess* server_ = nullptr;
};

const std::string kChat =
    R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"temperature":0})";

TEST_F(HttpFramingTest, AnOversizedBodyWithoutExpectGets413) {
  // 2 MB against --max-body-mb 1, sent whole, as most clients do: one 413, no reset.
  const std::string body(2 << 20, 'x');
  ExpectOneError(Exchange("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body),
                 413);
}

TEST_F(HttpFramingTest, AnOversizedChunkedBodyGets413) {
  std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 40; ++i) request += "10000\r\n" + std::string(0x10000, 'y') + "\r\n";
  ExpectOneError(Exchange(request + "0\r\n\r\n"), 413);
}

TEST_F(HttpFramingTest, A100KbUriGets414) {
  ExpectOneError(
      Exchange("GET /v1/models?" + std::string(100 << 10, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"),
      414);
}

TEST_F(HttpFramingTest, A60KbAuthorizationHeaderGetsOne431) {
  ExpectOneError(Exchange("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                          std::string(60 << 10, 'k') + "\r\n\r\n"),
                 431);
}

TEST_F(HttpFramingTest, AMalformedHeadGetsOne400) {
  ExpectOneError(Exchange("GET /health HTTP/1.1\r\nNo colon here\r\n\r\n"), 400);
  ExpectOneError(Exchange("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                 400);
  constexpr char kNul[] = "GET /health HTTP/1.1\r\nX: a\0b\r\n\r\n";
  ExpectOneError(Exchange(std::string(kNul, sizeof(kNul) - 1)), 400);
}

TEST_F(HttpFramingTest, LfOnlyRequestsAreServed) {
  const std::vector<Response> responses = Exchange(
      "POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Type: application/json\n"
      "Connection: close\nContent-Length: " +
      std::to_string(kChat.size()) + "\n\n" + kChat);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200) << responses[0].body;
  EXPECT_NE(responses[0].body.find("chat.completion"), std::string::npos);
}

TEST_F(HttpFramingTest, ChunkedBodiesArePassedOn) {
  std::string chunked;
  for (size_t at = 0; at < kChat.size(); at += 7) {
    const std::string piece = kChat.substr(at, 7);
    char size[16];
    std::snprintf(size, sizeof(size), "%zx\r\n", piece.size());
    chunked += size + piece + "\r\n";
  }
  const std::vector<Response> responses = Exchange(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n" +
      chunked + "0\r\n\r\n");
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200) << responses[0].body;
}

// One keep-alive connection: requests served one after another, then a malformed one gets
// its 400 after them, once, and the connection closes.
TEST_F(HttpFramingTest, KeepAliveRequestsAreServedAndAnErrorComesAfterThem) {
  const int fd = Connect(server_->port());
  std::string received;
  auto await_responses = [&](size_t n) {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    char buffer[65536];
    while (ParseResponses(received).size() < n && Clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
      if (got <= 0) break;
      received.append(buffer, static_cast<size_t>(got));
    }
  };
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  await_responses(1);
  SendAll(fd, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
  await_responses(2);
  SendAll(fd, "BROKEN REQUEST LINE\r\n\r\n");
  received += ReadUntilClosed(fd);
  ::close(fd);
  const std::vector<Response> responses = ParseResponses(received);
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_NE(responses[1].body.find("\"data\""), std::string::npos);
  EXPECT_EQ(responses[2].status, 400);
  EXPECT_TRUE(IsOpenAiError(responses[2].body));
}

TEST_F(HttpFramingTest, ASlowHeadGets408AtTheHeaderTimeout) {
  const int fd = Connect(server_->port());
  const auto start = Clock::now();
  SendAll(fd, "GET /health HTTP/1.1\r\n");
  std::thread trickle([fd] {  // a byte every 300 ms: each recv is quick, the head never ends
    for (int i = 0; i < 20; ++i) {
      if (::send(fd, "X", 1, MSG_NOSIGNAL) <= 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  const std::vector<Response> responses = ParseResponses(ReadUntilClosed(fd, 10));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::shutdown(fd, SHUT_RDWR);  // ends the trickle
  trickle.join();
  ::close(fd);
  ExpectOneError(responses, 408);
  EXPECT_LT(seconds, 5.0) << "--header-timeout 2 took " << seconds << " s";
}

TEST_F(HttpFramingTest, ASlowBodyGets408AtTheBodyTimeout) {
  const int fd = Connect(server_->port());
  const auto start = Clock::now();
  SendAll(fd,
          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
          "application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\":");
  const std::vector<Response> responses = ParseResponses(ReadUntilClosed(fd, 10));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  ExpectOneError(responses, 408);
  EXPECT_LT(seconds, 5.0) << "--body-timeout 2 took " << seconds << " s";
}

TEST_F(HttpFramingTest, ManyConnectionsOpenedAndDroppedLeaveTheServerServing) {
  for (int round = 0; round < 5; ++round) {
    std::vector<int> fds;
    for (int i = 0; i < 100; ++i) {
      fds.push_back(Connect(server_->port()));
      if (i % 3 == 0) SendAll(fds.back(), "POST /v1/chat/completions HTTP/1.1\r\nContent-Le");
      if (i % 3 == 1) SendAll(fds.back(), "GET /health HTTP/1.1\r\n\r\n");
    }
    for (const int fd : fds) ::close(fd);
  }
  const std::vector<Response> responses =
      Exchange("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 200);
}

// Seconds of CPU the process has used (user + system), from /proc/<pid>/stat.
double CpuSeconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Connections whose deadlines have passed (here: refused heads, lingering) must sleep in
// poll, not spin: 1,000 slow heads once kept both cores busy until their 408.
TEST_F(HttpFramingTest, RefusedAndSlowConnectionsCostNoCpuWhileTheyWait) {
  std::vector<int> fds;
  for (int i = 0; i < 50; ++i) {
    fds.push_back(Connect(server_->port()));
    SendAll(fds.back(), "GET /health HTTP/1.1\r\nX-Slow: a");
  }
  // A byte a second from each: the heads get their 408 at 2 s, then the front lingers,
  // reading; measured from 5.5 s (past the 5 s idle deadline of a new connection) to 7.5 s.
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    while (!stop) {
      for (const int fd : fds) ::send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      for (int i = 0; i < 10 && !stop; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5500));
  const double before = CpuSeconds(server_->pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double used = CpuSeconds(server_->pid()) - before;
  stop = true;
  trickle.join();
  for (const int fd : fds) ::close(fd);
  EXPECT_LT(used, 0.3) << "the server used " << used << " s of CPU in 2 s with 50 idle connections";
}

}  // namespace
}  // namespace kvault::testing
