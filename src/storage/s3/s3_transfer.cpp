// One HTTP exchange with the S3 server (S3Store::send): libcurl with its SigV4 signing, a pool of
// easy handles so connections are reused, retries with backoff that resume a download where it
// was cut, and the server's refusals turned into errors that name the setting to fix.
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "storage/s3/s3_detail.hpp"
#include "util/error.hpp"
#include "util/signals.hpp"
#include "version.hpp"

namespace backupctl {

namespace {

// curl's receive buffer (its default is 16 KiB; libcurl takes up to 10 MiB since 7.88) and send
// buffer (default 64 KiB, at most 2 MiB): one of each per connection.
constexpr long kCurlBufferSize = 512 * 1024;
constexpr long kCurlUploadBufferSize = 1024 * 1024;
constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const std::string& user_agent() {
  static const std::string ua = std::string("backupctl/") + kVersion;
  return ua;
}

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

struct Transfer {
  S3Store::Request* request = nullptr;
  S3Store::Response* response = nullptr;
  CURL* curl = nullptr;
  int* fd = nullptr;  // the connection's socket (the handle's slot), -1 while there is none
  std::uint64_t delivered = 0;  // body bytes passed to the request's sink
  std::uint64_t skip = 0;       // bytes of a resumed response already delivered before
  bool status_checked = false;
  bool to_sink = false;
  std::exception_ptr sink_error;
};

// Acknowledge what arrived at once. A server that writes a response's headers and body in two
// writes with Nagle's algorithm on (Ceph RGW's beast by default: rgw's tcp_nodelay is off) holds
// the body until the headers are acknowledged, and Linux delays that ACK by up to 40 ms: a small
// GET on a reused connection then takes ~44 ms whatever the link. TCP_QUICKACK is not sticky (the
// kernel returns to delayed ACKs by itself), so it is set again as each response begins.
// (libcurl 7.88 answers CURLINFO_ACTIVESOCKET with -1 during a transfer: the socket comes from
// on_socket_open.)
void ack_now(int fd) {
  if (fd < 0) return;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

int on_socket_open(void* slot, curl_socket_t fd, curlsocktype) {
  *static_cast<int*>(slot) = fd;
  ack_now(fd);
  // libcurl 7.88 does not make its sockets close-on-exec: a pg_restore or age started while a
  // download runs (restore db --remote) would inherit the connection.
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return CURL_SOCKOPT_OK;
}

int on_socket_close(void* slot, curl_socket_t fd) {
  if (*static_cast<int*>(slot) == fd) *static_cast<int*>(slot) = -1;
  return ::close(fd);
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) ack_now(*t->fd);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = lower(line.substr(0, colon));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
    t->response->headers[name] = value;
  } else if (line.rfind("HTTP/", 0) == 0) {
    t->response->headers.clear();  // a new response (after 100-continue or a redirect)
  }
  return size * n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::size_t len = size * n;
  ack_now(*t->fd);
  if (!t->status_checked) {
    long code = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
    t->to_sink = t->request->sink != nullptr && code >= 200 && code < 300;
    t->status_checked = true;
    if (t->to_sink && t->request->range && code != 206) {
      // The whole object instead of the bytes asked for: not one byte of it into the sink.
      t->sink_error = std::make_exception_ptr(Error(ErrorCode::tool_failed,
                                                    "the S3 server answered a ranged GET with the whole object",
                                                    "the server does not support Range requests"));
      return 0;
    }
  }
  if (!t->to_sink) {
    t->response->body.append(data, len);
    return len;
  }
  try {
    t->request->sink->write(std::span<const char>(data, len));
    t->delivered += len;
  } catch (...) {
    t->sink_error = std::current_exception();
    return 0;  // aborts the transfer
  }
  return len;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t n, void* user) {
  auto* body = static_cast<RewindableSource*>(user);
  return body->read(std::span<char>(buffer, size * n));
}

int on_progress(void*, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return interrupt_pending() ? 1 : 0;  // a signal aborts the transfer (not the cleanup after it)
}

bool retryable_curl(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

// A pool of curl easy handles: each thread takes one per request, so connections are reused.
// Each handle remembers the socket of its connection (libcurl tells it in no callback).
class S3Store::Handles {
 public:
  struct Handle {
    CURL* curl = nullptr;
    int fd = -1;
  };
  ~Handles() {
    for (auto& h : m_all) curl_easy_cleanup(h->curl);
  }
  Handle* take() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_free.empty()) {
      m_all.push_back(std::make_unique<Handle>());
      m_all.back()->curl = curl_easy_init();
      return m_all.back().get();
    }
    Handle* h = m_free.back();
    m_free.pop_back();
    return h;
  }
  void give(Handle* h) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_free.push_back(h);
  }

 private:
  std::mutex m_mutex;
  std::vector<std::unique_ptr<Handle>> m_all;
  std::vector<Handle*> m_free;
};

S3Store::S3Store(S3Settings settings) : m_settings(std::move(settings)), m_handles(new Handles) {
  static CurlGlobal global;
  if (m_settings.endpoint.find("://") == std::string::npos) m_settings.endpoint = "http://" + m_settings.endpoint;
  while (!m_settings.endpoint.empty() && m_settings.endpoint.back() == '/') m_settings.endpoint.pop_back();
}

S3Store::~S3Store() = default;

// What to do about a 403: which setting is wrong, or the clock. A HEAD's 403 has no body (no
// code), but every answer has a Date: a clock 15 minutes off is seen there.
std::string S3Store::forbidden_hint(const std::string& code, const Response& response) const {
  const auto& n = m_settings.names;
  if (auto d = response.headers.find("date"); d != response.headers.end() && m_settings.fixed_amz_date.empty()) {
    const time_t server = curl_getdate(d->second.c_str(), nullptr);
    const long off = server > 0 ? static_cast<long>(std::time(nullptr) - server) : 0;
    if (code == "RequestTimeTooSkewed" || std::labs(off) > 15 * 60) {
      return fmt::format("this host's clock is {} min {} the server's (a request is signed for 15 minutes): set it right "
                         "(timedatectl set-ntp true)",
                         std::labs(off) / 60, off > 0 ? "ahead of" : "behind");
    }
  }
  if (code == "InvalidAccessKeyId") return "the server knows no such access key: check " + n.access_key;
  if (code == "SignatureDoesNotMatch") return "the access key is known, its secret does not match: check " + n.secret_key;
  if (code == "AccessDenied") return "the key in " + n.access_key + " may not do this here: give it the rights (README), or use another key";
  return "check " + n.access_key + " and " + n.secret_key + " (and this host's clock: a request is signed for 15 minutes)";
}

namespace {

// The request's headers for curl: its own, the payload's sha256 (signed), a fixed date (tests),
// and the Range (a resumed download asks for the rest).
curl_slist* header_list(const S3Store::Request& request, const S3Settings& settings, std::uint64_t resumed) {
  curl_slist* headers = nullptr;
  for (const auto& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  headers = curl_slist_append(
      headers, ("x-amz-content-sha256: " + (request.payload_sha256.empty() ? std::string(kEmptySha256)
                                                                           : request.payload_sha256))
                   .c_str());
  if (!settings.fixed_amz_date.empty()) {
    headers = curl_slist_append(headers, ("X-Amz-Date: " + settings.fixed_amz_date).c_str());
  }
  if (resumed > 0 || request.range) {
    std::uint64_t first = (request.range ? request.range->first : 0) + resumed;
    std::string last = request.range ? std::to_string(request.range->second) : "";
    headers = curl_slist_append(headers, ("Range: bytes=" + std::to_string(first) + "-" + last).c_str());
  }
  // No "Expect:" header to turn off 100-continue: curl would sign the empty header it then does
  // not send, and a verifying server rejects the signature (caught by the AWS vectors test).
  return headers;
}

struct CurlList {
  curl_slist* list = nullptr;
  ~CurlList() { curl_slist_free_all(list); }
};

// Every option of one exchange, on a handle from the pool (reset before).
void configure(CURL* c, int* fd_slot, Transfer& t, S3Store::Request& request, const S3Settings& settings,
               const std::string& target, const std::string& sigv4, curl_slist* headers, curl_slist* connect_to) {
  curl_easy_setopt(c, CURLOPT_URL, target.c_str());
  // Keys are data, not paths: without this, libcurl removes "." and ".." segments from the path
  // (RFC 3986) and an object key "a/../../other/x" would be written to another key or bucket.
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(c, CURLOPT_USERNAME, settings.access_key.c_str());
  curl_easy_setopt(c, CURLOPT_PASSWORD, settings.secret_key.c_str());
  curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, on_socket_open);
  curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, fd_slot);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_socket_close);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, fd_slot);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  // Bodies move in large reads and writes: with curl's 16 KiB default a 600 MiB restore from
  // the remote took ~44,000 recv() calls, each after a poll() (6,000 of each with 512 KiB).
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, kCurlBufferSize);
  curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, kCurlUploadBufferSize);
  // Like every S3 client: servers log it, and operators filter on it.
  curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent().c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  // A stalled transfer (under 1 byte/s for 60 s) fails and is retried; no limit on total time.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  if (settings.max_send_speed > 0) {
    curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, static_cast<curl_off_t>(settings.max_send_speed));
  }
  if (!settings.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, settings.ca_file.c_str());
  if (connect_to) curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to);
  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method == "PUT" || (request.method == "POST" && request.body)) {
    if (request.body) {
      request.body->rewind();
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(c, CURLOPT_READDATA, request.body);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body->size()));
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (request.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
}

// Before the next attempt: 200 ms, 400 ms, 800 ms, ... each with up to as much again at random.
void back_off(int attempt) {
  static thread_local std::mt19937 rng(std::random_device{}());
  int base = 200 << (attempt - 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(base + static_cast<int>(rng() % base)));
}

}  // namespace

// A 3xx or 4xx (not 304): the server refused; the error names what to fix where it can.
void S3Store::refuse(Request& request, const Response& response, const std::string& what) {
  const long status = response.status;
  auto [code, message] = s3_error(response.body);
  std::string detail = code.empty() ? fmt::format("HTTP {}", status) : code_and_message(code, message);
  if (status == 403 && code.empty() && request.method == "HEAD") {
    // A HEAD's answer has no body, so no code to say which setting is wrong: the same URL as
    // a GET of one byte says it (and throws that).
    Request probe = request;
    probe.method = "GET";
    probe.sink = nullptr;
    probe.range = std::make_pair(std::uint64_t{0}, std::uint64_t{0});
    send(probe, what);
  }
  if (status == 403) {
    throw Error(ErrorCode::connection, fmt::format("{}: access denied by {}: {}", what, m_settings.endpoint, detail),
                forbidden_hint(code, response));
  }
  if (status == 404) {
    throw Error(ErrorCode::not_found, fmt::format("{}: {}", what, detail),
                code == "NoSuchBucket" || (code.empty() && request.key.empty())
                    ? "the bucket " + request.bucket + " does not exist on " + m_settings.endpoint + ": create it, or fix " +
                          m_settings.names.bucket
                : code.empty() ? "the object or its bucket (" + request.bucket + ") does not exist on " + m_settings.endpoint
                               : "");
  }
  if (code == "InvalidLocationConstraint") {
    throw Error(ErrorCode::tool_failed, fmt::format("{}: {}", what, detail),
                m_settings.names.region + " is " + m_settings.region + "; Ceph RGW and many MinIO setups take only their "
                "own zonegroup's name (often us-east-1 or default): set " + m_settings.names.region + " to it");
  }
  const bool locked = std::any_of(request.headers.begin(), request.headers.end(),
                                  [](const std::string& h) { return h.starts_with("x-amz-object-lock-mode:"); });
  if (code == "InvalidRequest" && locked) {
    throw Error(ErrorCode::tool_failed, fmt::format("{}: {}", what, detail),
                "the bucket " + request.bucket + " has no Object Lock: create one with it on (aws s3api create-bucket "
                "--object-lock-enabled-for-bucket) and point the URL there, or unset BACKUP_REMOTE_OBJECT_LOCK_DAYS");
  }
  throw Error(ErrorCode::tool_failed, fmt::format("{}: {}", what, detail), "the S3 server refused the request");
}

// Each attempt: a handle from the pool, configured, performed; then the answer judged: done, a
// refusal (thrown), or a failure worth another attempt (a connection cut, 5xx, 429). A download
// cut short resumes where it stopped (Range), and a server that answers the rest with the whole
// object again is an error (what reached the sink cannot be taken back).
S3Store::Response S3Store::send(Request& request, const std::string& what) {
  const std::string target = url(request.bucket, request.key, request.query);
  const std::string sigv4 = "aws:amz:" + m_settings.region + ":s3";
  std::string last_problem;
  std::uint64_t resumed = 0;  // body bytes delivered to the sink by earlier attempts
  for (int attempt = 1; attempt <= m_settings.max_attempts; ++attempt) {
    check_interrupted();
    Response response;
    Transfer t;
    t.request = &request;
    t.response = &response;
    Handles::Handle* handle = m_handles->take();
    struct Give {
      Handles& h;
      Handles::Handle* handle;
      ~Give() { h.give(handle); }
    } give{*m_handles, handle};
    CURL* c = handle->curl;
    t.curl = c;
    t.fd = &handle->fd;
    curl_easy_reset(c);
    CurlList headers{header_list(request, m_settings, resumed)};
    CurlList connect_to{m_settings.connect_to.empty() ? nullptr : curl_slist_append(nullptr, m_settings.connect_to.c_str())};
    configure(c, &handle->fd, t, request, m_settings, target, sigv4, headers.list, connect_to.list);

    CURLcode rc = curl_easy_perform(c);
    if (t.sink_error) std::rethrow_exception(t.sink_error);
    check_interrupted();
    resumed += t.delivered;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
    const long status = response.status;
    if (rc != CURLE_OK) {
      last_problem = curl_easy_strerror(rc);
      if (!retryable_curl(rc)) {
        throw Error(ErrorCode::connection, fmt::format("{}: {} ({})", what, last_problem, m_settings.endpoint),
                    "check " + m_settings.names.endpoint + " and that the server is reachable");
      }
    } else if (status >= 500 || status == 429) {
      auto [code, message] = s3_error(response.body);
      last_problem = fmt::format("HTTP {} {}", status, code.empty() ? "" : code + ": " + message);
    } else if (status >= 300 && status != 304) {
      refuse(request, response, what);
    } else if (request.sink && attempt > 1 && resumed > t.delivered && status == 200) {
      // Asked for the rest (Range) but got the whole object again: what reached the sink twice
      // cannot be taken back.
      throw Error(ErrorCode::tool_failed, what + ": the server ignored the Range of a resumed download", "run again");
    } else {
      // A 2xx whose body was cut short by the connection is caught by curl (PARTIAL_FILE).
      return response;
    }
    if (request.sink && request.range && resumed == request.range->second - request.range->first + 1) {
      // Every byte of the range arrived before the connection failed (a timeout or reset after
      // the last byte): asking again would ask for an empty range, which no server can answer.
      // Not reached by the tests: a cut after the last byte is a complete transfer to curl.
      response.status = 206;
      return response;
    }
    if (attempt < m_settings.max_attempts) {
      if (request.sink && t.delivered > 0) {
        spdlog::warn("s3: {} interrupted after {} bytes ({}); resuming", what, resumed, last_problem);
      } else {
        spdlog::warn("s3: {} failed ({}); retrying", what, last_problem);
      }
      back_off(attempt);
    }
  }
  throw Error(ErrorCode::connection,
              fmt::format("{}: {} after {} attempts ({})", what, last_problem, m_settings.max_attempts,
                          m_settings.endpoint),
              "the S3 server is down or overloaded; check it and run again");
}

}  // namespace backupctl
