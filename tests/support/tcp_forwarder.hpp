// A loopback TCP forwarder: what a connection pooler or a second published port looks like to a
// client, another port that reaches the same server. Accepts on a port of its own and relays each
// connection to 127.0.0.1:<to>, both ways, until either side closes. cut_after(n) drops one
// connection once the server has sent n bytes on it: a network that fails mid-answer.
// stall_after(n) stops relaying the server's bytes (on every connection, the connections kept
// open) once it has sent n in all: a server or network that hangs mid-answer.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <thread>

#include "support/loopback.hpp"

namespace backupctl::test {

class TcpForwarder {
 public:
  explicit TcpForwarder(int to) : m_to(to) {
    m_fd = listen_on_loopback(m_port);
    m_accept = std::thread([this] { accept_loop(); });
  }
  ~TcpForwarder() {
    m_stop = true;
    ::shutdown(m_fd, SHUT_RDWR);
    ::close(m_fd);
    m_accept.join();
    for (auto& t : m_relays) t.join();
  }
  TcpForwarder(const TcpForwarder&) = delete;
  TcpForwarder& operator=(const TcpForwarder&) = delete;

  int port() const { return m_port; }
  // The next connection to carry more than `bytes` from the server is cut there (once).
  void cut_after(std::int64_t bytes) { m_cut_after = bytes; }
  int cuts() const { return m_cuts; }
  void stall_after(std::int64_t bytes) { m_stall_after = bytes; }
  bool stalled() const {
    const std::int64_t at = m_stall_after.load();
    return at >= 0 && m_from_servers.load() >= at;
  }

 private:
  void accept_loop() {
    while (!m_stop) {
      int c = ::accept(m_fd, nullptr, nullptr);
      if (c < 0) return;
      int s = connect_loopback(m_to);
      if (s < 0) {
        ::close(c);
        continue;
      }
      m_relays.emplace_back([this, c, s] { relay(c, s); });
    }
  }
  void relay(int a, int b) {
    char buf[65536];
    std::int64_t from_server = 0;
    while (!m_stop) {
      // Stalled: the server's bytes wait in the socket (one read may go past the mark).
      pollfd fds[2] = {{a, POLLIN, 0}, {b, static_cast<short>(stalled() ? 0 : POLLIN), 0}};
      if (::poll(fds, 2, 200) < 0) break;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (!fds[i].revents) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) done = true;
        if (i == 1 && n > 0) {
          std::int64_t cut = m_cut_after.load();
          if (cut >= 0 && from_server + n > cut && m_cut_after.compare_exchange_strong(cut, -1)) {
            n = static_cast<ssize_t>(cut - from_server);
            done = true;  // after writing what came before the cut
            ++m_cuts;
          }
          from_server += n;
          m_from_servers += n;
        }
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::write(fds[1 - i].fd, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) {
            done = true;
            break;
          }
          off += w;
        }
      }
      if (done) break;
    }
    ::close(a);
    ::close(b);
  }

  int m_to;
  int m_fd = -1;
  int m_port = 0;
  std::atomic<bool> m_stop{false};
  std::atomic<std::int64_t> m_cut_after{-1};
  std::atomic<int> m_cuts{0};
  std::atomic<std::int64_t> m_stall_after{-1};
  std::atomic<std::int64_t> m_from_servers{0};
  std::thread m_accept;
  std::list<std::thread> m_relays;
};

}  // namespace backupctl::test
