// A loopback TCP forwarder: what a connection pooler or a second published port looks like to a
// client, another port that reaches the same server. Accepts on a port of its own and relays each
// connection to 127.0.0.1:<to>, both ways, until either side closes.
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
    while (!m_stop) {
      pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(fds, 2, 200) < 0) break;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (!fds[i].revents) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) done = true;
        for (ssize_t off = 0; !done && off < n;) {
          ssize_t w = ::write(fds[1 - i].fd, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) done = true;
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
  std::thread m_accept;
  std::list<std::thread> m_relays;
};

}  // namespace backupctl::test
