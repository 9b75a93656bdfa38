// A loopback HTTP server for tests that need the exact request a client sent: it accepts one
// connection, reads one whole request (headers and a Content-Length body), answers with a
// `status_line` response (its body `reply_body`, empty by default) and keeps the request. Used by
// the SigV4 unit tests (the Authorization header libcurl sent), the notification test (the
// webhook's body) and a crafted S3 listing.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/loopback.hpp"

namespace backupctl::test {

class CaptureServer {
 public:
  // `count` requests, one after another (pings: start, then the end).
  explicit CaptureServer(std::string status_line = "HTTP/1.1 200 OK", int count = 1, std::string reply_body = {})
      : CaptureServer(std::move(status_line), std::vector<std::string>(static_cast<std::size_t>(count), reply_body)) {}
  // One request per body, each answered with its body (pages of a listing).
  CaptureServer(std::string status_line, std::vector<std::string> reply_bodies)
      : m_status_line(std::move(status_line)),
        m_reply_bodies(std::move(reply_bodies)),
        m_count(static_cast<int>(m_reply_bodies.size())) {
    m_fd = listen_on_loopback(m_port, 4);
    m_thread = std::thread([this] {
      for (int i = 0; i < m_count; ++i) serve_one();
    });
  }
  ~CaptureServer() {
    if (m_thread.joinable()) {
      // Unblock accept() when fewer requests came.
      for (int i = 0; i < m_count; ++i) {
        int s = connect_loopback(m_port);
        if (s >= 0) ::close(s);
      }
      m_thread.join();
    }
    ::close(m_fd);
  }
  CaptureServer(const CaptureServer&) = delete;
  CaptureServer& operator=(const CaptureServer&) = delete;

  int port() const { return m_port; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(m_port); }
  // The whole request as received; waits for it.
  const std::string& request() {
    if (m_thread.joinable()) m_thread.join();
    return m_requests.empty() ? m_none : m_requests.front();
  }
  // Every request (waits for all `count`).
  const std::vector<std::string>& requests() {
    if (m_thread.joinable()) m_thread.join();
    return m_requests;
  }
  std::string body() {
    const std::string& r = request();
    auto p = r.find("\r\n\r\n");
    return p == std::string::npos ? "" : r.substr(p + 4);
  }
  // The value of header `name` as sent (case as sent), "" when absent.
  std::string header(const std::string& name) {
    const std::string& r = request();
    auto p = r.find("\r\n" + name + ": ");
    if (p == std::string::npos) return "";
    p += name.size() + 4;
    return r.substr(p, r.find("\r\n", p) - p);
  }

 private:
  void serve_one() {
    int c = ::accept(m_fd, nullptr, nullptr);
    std::string req;
    char buf[65536];
    bool continued = false;
    for (;;) {
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<std::size_t>(n));
      auto hdr = req.find("\r\n\r\n");
      if (hdr == std::string::npos) continue;
      std::smatch m;
      std::string head = req.substr(0, hdr);
      if (!continued && std::regex_search(head, std::regex(R"(Expect: 100-continue)", std::regex::icase))) {
        // libcurl waits (1 s) for this before sending a PUT's body.
        const char* go = "HTTP/1.1 100 Continue\r\n\r\n";
        [[maybe_unused]] ssize_t w = ::write(c, go, std::strlen(go));
        continued = true;
      }
      std::size_t want = std::regex_search(head, m, std::regex(R"(Content-Length: (\d+))", std::regex::icase))
                             ? std::stoul(m[1])
                             : 0;
      if (req.size() - hdr - 4 >= want) break;
    }
    if (!req.empty()) m_requests.push_back(req);
    const std::string& body = m_reply_bodies[m_served++];
    const std::string reply = m_status_line + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    [[maybe_unused]] ssize_t w = ::write(c, reply.data(), reply.size());
    ::close(c);
  }

  std::string m_status_line;
  std::vector<std::string> m_reply_bodies;
  std::size_t m_served = 0;
  int m_fd = -1;
  int m_port = 0;
  std::thread m_thread;
  int m_count = 1;
  std::vector<std::string> m_requests;
  std::string m_none;
};

}  // namespace backupctl::test
