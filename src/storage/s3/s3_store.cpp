#include "storage/s3/s3_store.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <pugixml.hpp>
#include <map>
#include <random>
#include <thread>

#include "util/digest.hpp"
#include "util/encoding.hpp"
#include "util/error.hpp"
#include "version.hpp"
#include "util/signals.hpp"

namespace backupctl {

std::size_t MemorySource::read(std::span<char> buf) {
  std::size_t n = std::min(buf.size(), m_size - m_pos);
  std::memcpy(buf.data(), m_data + m_pos, n);
  m_pos += n;
  return n;
}

std::string uri_encode(std::string_view text, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

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

std::string strip_quotes(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

struct Digests {
  std::string sha256_hex;
  std::string md5_base64;
};

Digests digest(RewindableSource& body) {
  Digest sha(DigestKind::sha256), md5(DigestKind::md5);
  body.rewind();
  std::vector<char> buf(1 << 16);
  for (;;) {
    std::size_t n = body.read(buf);
    if (n == 0) break;
    sha.update(buf.data(), n);
    md5.update(buf.data(), n);
  }
  body.rewind();
  return Digests{sha.finish_hex(), md5.finish_base64()};
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

// What an S3 error code means, for servers that send it without a <Message> (Ceph RGW does).
std::string describe_code(const std::string& code) {
  static const std::map<std::string, std::string> known = {
      {"SignatureDoesNotMatch", "the request signature does not match: a wrong secret key, or a clock off by minutes"},
      {"InvalidAccessKeyId", "the access key is unknown to the server"},
      {"AccessDenied", "the key may not do this"},
      {"NoSuchBucket", "the bucket does not exist"},
      {"NoSuchKey", "the object does not exist"},
      {"NoSuchUpload", "the multipart upload does not exist (aborted or completed)"},
      {"BucketAlreadyExists", "the bucket name is taken by another account"},
      {"BucketNotEmpty", "the bucket still holds objects"},
      {"InvalidLocationConstraint", "the server does not accept this region for new buckets"},
      {"InvalidBucketName", "the bucket name is not valid on this server"},
      {"XAmzContentSHA256Mismatch", "the body does not match its sha256"},
      {"BadDigest", "the body does not match its Content-MD5"},
      {"EntityTooSmall", "a part of a multipart upload is below the server's minimum size"},
      {"QuotaExceeded", "the account's quota is exhausted"},
      {"SlowDown", "the server asks to slow down"},
      {"RequestTimeTooSkewed", "this host's clock is too far from the server's"},
      {"InvalidRequest", "the server refused the request as invalid"},
  };
  auto it = known.find(code);
  return it == known.end() ? "" : it->second;
}

// "<Error><Code>NoSuchBucket</Code><Message>...</Message></Error>" -> {code, message}; when the
// server sends no message (RGW), what the code means.
std::pair<std::string, std::string> s3_error(const std::string& body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return {"", ""};
  auto e = doc.child("Error");
  std::string code = e.child_value("Code"), message = e.child_value("Message");
  if (message.empty()) message = describe_code(code);
  return {code, message};
}

// "Code (message)", or the code alone.
std::string code_and_message(const std::string& code, const std::string& message) {
  return message.empty() ? code : code + " (" + message + ")";
}

}  // namespace

// A pool of curl easy handles: each thread takes one per request, so connections are reused.
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

std::string S3Store::url(const std::string& bucket, const std::string& key,
                         const std::vector<std::pair<std::string, std::string>>& query) const {
  std::string u = m_settings.endpoint + "/";
  if (!bucket.empty()) {
    u += uri_encode(bucket, false);
    if (!key.empty()) u += "/" + uri_encode(key, true);
  }
  if (!query.empty()) {
    auto sorted = query;
    std::sort(sorted.begin(), sorted.end());
    std::string q;
    for (const auto& [k, v] : sorted) {
      if (!q.empty()) q += '&';
      q += uri_encode(k, false) + "=" + uri_encode(v, false);
    }
    u += "?" + q;
  }
  return u;
}

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

S3Store::Response S3Store::send(Request& request, const std::string& what) {
  std::string target = url(request.bucket, request.key, request.query);
  std::string last_problem;
  std::uint64_t resumed = 0;  // body bytes delivered to the sink by earlier attempts
  for (int attempt = 1; attempt <= m_settings.max_attempts; ++attempt) {
    check_interrupted();
    Response response;
    Transfer t;
    t.request = &request;
    t.response = &response;
    Handles::Handle* handle = m_handles->take();
    CURL* c = handle->curl;
    t.curl = c;
    t.fd = &handle->fd;
    struct Give {
      Handles& h;
      Handles::Handle* handle;
      ~Give() { h.give(handle); }
    } give{*m_handles, handle};
    curl_easy_reset(c);

    curl_slist* headers = nullptr;
    for (const auto& h : request.headers) headers = curl_slist_append(headers, h.c_str());
    headers = curl_slist_append(
        headers, ("x-amz-content-sha256: " + (request.payload_sha256.empty() ? std::string(kEmptySha256)
                                                                             : request.payload_sha256))
                     .c_str());
    if (!m_settings.fixed_amz_date.empty()) {
      headers = curl_slist_append(headers, ("X-Amz-Date: " + m_settings.fixed_amz_date).c_str());
    }
    if (resumed > 0 || request.range) {
      std::uint64_t first = (request.range ? request.range->first : 0) + resumed;
      std::string last = request.range ? std::to_string(request.range->second) : "";
      headers = curl_slist_append(headers, ("Range: bytes=" + std::to_string(first) + "-" + last).c_str());
    }
    // No "Expect:" header to turn off 100-continue: curl would sign the empty header it then does
    // not send, and a verifying server rejects the signature (caught by the AWS vectors test).
    struct FreeHeaders {
      curl_slist* h;
      ~FreeHeaders() { curl_slist_free_all(h); }
    } free_headers{headers};

    curl_easy_setopt(c, CURLOPT_URL, target.c_str());
    // Keys are data, not paths: without this, libcurl removes "." and ".." segments from the path
    // (RFC 3986) and an object key "a/../../other/x" would be written to another key or bucket.
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    std::string sigv4 = "aws:amz:" + m_settings.region + ":s3";
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(c, CURLOPT_USERNAME, m_settings.access_key.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, m_settings.secret_key.c_str());
    curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, on_socket_open);
    curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, &handle->fd);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_socket_close);
    curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, &handle->fd);
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
    if (m_settings.max_send_speed > 0) {
      curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, static_cast<curl_off_t>(m_settings.max_send_speed));
    }
    if (!m_settings.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, m_settings.ca_file.c_str());
    curl_slist* connect_to = nullptr;
    if (!m_settings.connect_to.empty()) {
      connect_to = curl_slist_append(nullptr, m_settings.connect_to.c_str());
      curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to);
    }
    struct FreeConnectTo {
      curl_slist* l;
      ~FreeConnectTo() { curl_slist_free_all(l); }
    } free_connect_to{connect_to};
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

    CURLcode rc = curl_easy_perform(c);
    if (t.sink_error) std::rethrow_exception(t.sink_error);
    check_interrupted();
    resumed += t.delivered;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    response.status = status;
    bool retry = false;
    if (rc != CURLE_OK) {
      last_problem = curl_easy_strerror(rc);
      retry = retryable_curl(rc);
      if (!retry) {
        throw Error(ErrorCode::connection,
                    fmt::format("{}: {} ({})", what, last_problem, m_settings.endpoint),
                    "check " + m_settings.names.endpoint + " and that the server is reachable");
      }
    } else if (status >= 500 || status == 429) {
      auto [code, message] = s3_error(response.body);
      last_problem = fmt::format("HTTP {} {}", status, code.empty() ? "" : code + ": " + message);
      retry = true;
    } else if (status >= 300 && !(status == 304)) {
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
      throw Error(ErrorCode::tool_failed, fmt::format("{}: {}", what, detail),
                  "the S3 server refused the request");
    } else if (request.sink && attempt > 1 && resumed > t.delivered && status == 200) {
      // Asked for the rest (Range) but got the whole object again: what reached the sink twice
      // cannot be taken back.
      throw Error(ErrorCode::tool_failed, what + ": the server ignored the Range of a resumed download",
                  "run again");
    }
    if (!retry) {
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
    if (request.sink && t.delivered > 0 && attempt < m_settings.max_attempts) {
      spdlog::warn("s3: {} interrupted after {} bytes ({}); resuming", what, resumed, last_problem);
    } else if (attempt < m_settings.max_attempts) {
      spdlog::warn("s3: {} failed ({}); retrying", what, last_problem);
    }
    if (attempt < m_settings.max_attempts) {
      static thread_local std::mt19937 rng(std::random_device{}());
      int base = 200 << (attempt - 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(base + static_cast<int>(rng() % base)));
    }
  }
  throw Error(ErrorCode::connection,
              fmt::format("{}: {} after {} attempts ({})", what, last_problem, m_settings.max_attempts,
                          m_settings.endpoint),
              "the S3 server is down or overloaded; check it and run again");
}

std::vector<std::string> S3Store::list_buckets() {
  Request r;
  Response resp = send(r, "cannot list buckets");
  pugi::xml_document doc;
  if (!doc.load_buffer(resp.body.data(), resp.body.size())) {
    throw Error(ErrorCode::tool_failed, "cannot list buckets: the response is not XML");
  }
  std::vector<std::string> out;
  for (auto b : doc.child("ListAllMyBucketsResult").child("Buckets").children("Bucket")) {
    out.push_back(b.child_value("Name"));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool S3Store::bucket_exists(const std::string& bucket) {
  Request r;
  r.method = "HEAD";
  r.bucket = bucket;
  try {
    send(r, "cannot check bucket " + bucket);
    return true;
  } catch (const Error& e) {
    if (e.code() == ErrorCode::not_found) return false;
    throw;
  }
}

void S3Store::create_bucket(const std::string& bucket) {
  // AWS wants the region as a LocationConstraint outside us-east-1; Ceph RGW (and MinIO set up
  // without regions) refuse any constraint but their own zonegroup's name with
  // InvalidLocationConstraint, and take the bucket without one.
  std::string body;
  if (m_settings.region != "us-east-1") {
    body = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>" +
           m_settings.region + "</LocationConstraint></CreateBucketConfiguration>";
  }
  auto create = [&](const std::string& xml) {
    MemorySource src(xml.data(), xml.size());
    Request r;
    r.method = "PUT";
    r.bucket = bucket;
    if (!xml.empty()) {
      r.body = &src;
      r.payload_sha256 = digest(src).sha256_hex;
      r.headers = {"Content-Type: application/xml"};
    }
    send(r, "cannot create bucket " + bucket);
  };
  if (body.empty()) return create("");
  try {
    create(body);
  } catch (const Error& e) {
    if (std::string(e.what()).find("InvalidLocationConstraint") == std::string::npos) throw;
    spdlog::debug("s3: {} refuses the location constraint {}; creating {} without it", m_settings.endpoint,
                  m_settings.region, bucket);
    create("");
  }
}

void S3Store::delete_bucket(const std::string& bucket) {
  Request r;
  r.method = "DELETE";
  r.bucket = bucket;
  send(r, "cannot delete bucket " + bucket);
}

namespace {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Pages through an S3 listing whose XML root is `root`: `page` takes a page's entries and returns
// the query parameters that ask for the next page (the markers its answer names). The request is
// sent with the first page's query plus those, until a page is not truncated. A truncated page
// that names no next page, or the one just read, is an error: a server repeating a marker would
// otherwise keep the client asking forever.
void for_each_page(S3Store& store, S3Store::Request request, const char* root, const std::string& what,
                   const std::function<QueryParams(const pugi::xml_node&)>& page) {
  const QueryParams first = request.query;
  QueryParams markers;
  for (;;) {
    request.query = first;
    request.query.insert(request.query.end(), markers.begin(), markers.end());
    S3Store::Response resp = store.send(request, what);
    pugi::xml_document doc;
    if (!doc.load_buffer(resp.body.data(), resp.body.size())) {
      throw Error(ErrorCode::tool_failed, what + ": the response is not XML", "is " + store.settings().names.endpoint + " an S3 server?");
    }
    pugi::xml_node result = doc.child(root);
    QueryParams next = page(result);
    if (std::string(result.child_value("IsTruncated")) != "true") return;
    std::erase_if(next, [](const auto& param) { return param.second.empty(); });
    if (next.empty() || next == markers) {
      throw Error(ErrorCode::tool_failed, what + ": the server says the listing goes on but names no next page",
                  "the S3 server is misbehaving; check its logs");
    }
    markers = std::move(next);
  }
}

}  // namespace

void S3Store::list_objects(const std::string& bucket, const std::string& prefix,
                           const std::function<void(const ObjectEntry&)>& each) {
  Request r;
  r.bucket = bucket;
  r.query = {{"list-type", "2"}, {"max-keys", "1000"}};
  if (!prefix.empty()) r.query.emplace_back("prefix", prefix);
  for_each_page(*this, r, "ListBucketResult", "cannot list bucket " + bucket, [&](const pugi::xml_node& result) {
    for (auto c : result.children("Contents")) {
      ObjectEntry e;
      e.key = c.child_value("Key");
      e.size = std::stoull(c.child_value("Size"));
      e.etag = strip_quotes(c.child_value("ETag"));
      e.last_modified = c.child_value("LastModified");
      each(e);
    }
    return QueryParams{{"continuation-token", result.child_value("NextContinuationToken")}};
  });
}

namespace {

ObjectInfo info_from(const S3Store::Response& resp) {
  ObjectInfo info;
  auto get = [&](const char* name) {
    auto it = resp.headers.find(name);
    return it == resp.headers.end() ? std::string() : it->second;
  };
  std::string range = get("content-range");  // "bytes 10-99/100" on a resumed GET
  if (auto slash = range.rfind('/'); slash != std::string::npos) {
    info.size = std::stoull(range.substr(slash + 1));
  } else if (!get("content-length").empty()) {
    info.size = std::stoull(get("content-length"));
  }
  info.etag = strip_quotes(get("etag"));
  info.last_modified = get("last-modified");
  info.content_type = get("content-type");
  for (const auto& [name, value] : resp.headers) {
    if (name.rfind("x-amz-meta-", 0) == 0) info.metadata[name.substr(11)] = value;
  }
  return info;
}

}  // namespace

ObjectInfo S3Store::get_object(const std::string& bucket, const std::string& key, io::Sink& sink) {
  Request r;
  r.bucket = bucket;
  r.key = key;
  r.sink = &sink;
  return info_from(send(r, "cannot download " + bucket + "/" + key));
}

void S3Store::get_range(const std::string& bucket, const std::string& key, std::uint64_t first, std::uint64_t last,
                        io::Sink& sink, const std::string& if_match) {
  Request r;
  r.bucket = bucket;
  r.key = key;
  r.sink = &sink;
  r.range = std::make_pair(first, last);
  if (!if_match.empty()) r.headers.push_back("If-Match: \"" + if_match + "\"");
  send(r, fmt::format("cannot download bytes {}-{} of {}/{}", first, last, bucket, key));
}

ObjectInfo S3Store::head_object(const std::string& bucket, const std::string& key) {
  Request r;
  r.method = "HEAD";
  r.bucket = bucket;
  r.key = key;
  return info_from(send(r, "cannot read " + bucket + "/" + key));
}

namespace {

}  // namespace

std::string md5_base64_of(std::string_view data) {
  Digest md5(DigestKind::md5);
  md5.update(data);
  return md5.finish_base64();
}

namespace {

std::vector<std::string> put_headers(const PutOptions& options) {
  std::vector<std::string> h;
  if (!options.content_type.empty()) h.push_back("Content-Type: " + options.content_type);
  for (const auto& [name, value] : options.metadata) h.push_back("x-amz-meta-" + name + ": " + value);
  if (!options.storage_class.empty()) h.push_back("x-amz-storage-class: " + options.storage_class);
  if (!options.lock_until.empty()) {
    h.push_back("x-amz-object-lock-mode: COMPLIANCE");
    h.push_back("x-amz-object-lock-retain-until-date: " + options.lock_until);
  }
  return h;
}

}  // namespace

void S3Store::put_object(const std::string& bucket, const std::string& key, RewindableSource& body,
                         const PutOptions& options) {
  Digests d = options.sha256_hex.empty() || options.md5_base64.empty()
                  ? digest(body)
                  : Digests{options.sha256_hex, options.md5_base64};
  Request r;
  r.method = "PUT";
  r.bucket = bucket;
  r.key = key;
  r.body = &body;
  r.payload_sha256 = d.sha256_hex;
  r.headers = put_headers(options);
  r.headers.push_back("Content-MD5: " + d.md5_base64);
  send(r, "cannot upload " + bucket + "/" + key);
}

namespace {

class S3Multipart : public MultipartUpload {
 public:
  S3Multipart(S3Store& store, std::string bucket, std::string key, std::string upload_id,
              std::vector<std::pair<int, std::string>> parts = {})
      : m_store(store), m_bucket(std::move(bucket)), m_key(std::move(key)), m_id(std::move(upload_id)),
        m_parts(std::move(parts)) {}
  ~S3Multipart() override {
    if (!m_done) {
      InterruptShield shield;
      try {
        abort();
      } catch (const std::exception& e) {
        spdlog::error("s3: cannot abort the multipart upload of {}/{}: {}", m_bucket, m_key, e.what());
      }
    }
  }

  void upload_part(int number, RewindableSource& part, const std::string& md5_base64) override {
    // With the MD5 known, the payload goes unsigned: Content-MD5 already lets the server check it.
    Digests d = md5_base64.empty() ? digest(part) : Digests{"UNSIGNED-PAYLOAD", md5_base64};
    S3Store::Request r;
    r.method = "PUT";
    r.bucket = m_bucket;
    r.key = m_key;
    r.query = {{"partNumber", std::to_string(number)}, {"uploadId", m_id}};
    r.body = &part;
    r.payload_sha256 = d.sha256_hex;
    r.headers.push_back("Content-MD5: " + d.md5_base64);
    auto resp = m_store.send(r, fmt::format("cannot upload part {} of {}/{}", number, m_bucket, m_key));
    std::string etag = strip_quotes(resp.headers["etag"]);
    if (etag.empty()) {
      throw Error(ErrorCode::tool_failed,
                  fmt::format("cannot upload part {} of {}/{}: no ETag in the reply", number, m_bucket, m_key));
    }
    std::lock_guard<std::mutex> lock(m_mutex);
    // A part sent again (a resumed upload) replaces the entry it had.
    std::erase_if(m_parts, [&](const auto& p) { return p.first == number; });
    m_parts.emplace_back(number, etag);
  }

  void complete() override {
    std::sort(m_parts.begin(), m_parts.end());  // parts may have finished in any order
    std::string xml = "<CompleteMultipartUpload>";
    for (const auto& [n, etag] : m_parts) {
      xml += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>", n, etag);
    }
    xml += "</CompleteMultipartUpload>";
    MemorySource body(xml.data(), xml.size());
    Digests d = digest(body);
    S3Store::Request r;
    r.method = "POST";
    r.bucket = m_bucket;
    r.key = m_key;
    r.query = {{"uploadId", m_id}};
    r.body = &body;
    r.payload_sha256 = d.sha256_hex;
    r.headers = {"Content-Type: application/xml"};
    auto resp = m_store.send(r, fmt::format("cannot complete the upload of {}/{}", m_bucket, m_key));
    // S3 may answer 200 with an <Error> body.
    auto [code, message] = s3_error(resp.body);
    if (!code.empty()) {
      throw Error(ErrorCode::tool_failed,
                  fmt::format("cannot complete the upload of {}/{}: {} ({})", m_bucket, m_key, code, message));
    }
    m_done = true;
  }

  void abort() override {
    m_done = true;
    m_store.abort_multipart(m_bucket, m_key, m_id);
  }

  std::string upload_id() const override { return m_id; }
  bool parallel_parts() const override { return true; }
  void keep_open() override { m_done = true; }

 private:
  S3Store& m_store;
  std::string m_bucket, m_key, m_id;
  std::mutex m_mutex;  // upload_part() may run on several threads at once
  std::vector<std::pair<int, std::string>> m_parts;
  bool m_done = false;
};

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<MultipartUpload> S3Store::start_multipart(const std::string& bucket,
                                                          const std::string& key,
                                                          const PutOptions& options) {
  Request r;
  r.method = "POST";
  r.bucket = bucket;
  r.key = key;
  r.query = {{"uploads", ""}};
  r.headers = put_headers(options);
  Response resp = send(r, "cannot start the upload of " + bucket + "/" + key);
  pugi::xml_document doc;
  doc.load_buffer(resp.body.data(), resp.body.size());
  std::string id = doc.child("InitiateMultipartUploadResult").child_value("UploadId");
  if (id.empty()) {
    throw Error(ErrorCode::tool_failed, "cannot start the upload of " + bucket + "/" + key + ": no UploadId");
  }
  return std::make_unique<S3Multipart>(*this, bucket, key, id);
}

std::vector<S3Store::OpenUpload> S3Store::open_uploads(const std::string& bucket, const std::string& prefix) {
  std::vector<OpenUpload> out;
  Request r;
  r.bucket = bucket;
  r.query = {{"uploads", ""}, {"prefix", prefix}};
  for_each_page(*this, r, "ListMultipartUploadsResult", "cannot list the open uploads of " + bucket + "/" + prefix,
                [&](const pugi::xml_node& result) {
                  for (auto u : result.children("Upload")) {
                    out.push_back({u.child_value("Key"), u.child_value("UploadId"), u.child_value("Initiated")});
                  }
                  return QueryParams{{"key-marker", result.child_value("NextKeyMarker")},
                                     {"upload-id-marker", result.child_value("NextUploadIdMarker")}};
                });
  return out;
}

std::optional<std::string> S3Store::open_upload(const std::string& bucket, const std::string& key) {
  std::optional<std::string> newest;
  std::string newest_at;
  for (const OpenUpload& u : open_uploads(bucket, key)) {
    if (key != u.key) continue;  // a longer key with the same beginning
    if (!newest || u.initiated > newest_at) {
      newest = u.id;
      newest_at = u.initiated;
    }
  }
  return newest;
}

std::vector<S3Store::Part> S3Store::list_parts(const std::string& bucket, const std::string& key,
                                               const std::string& upload_id) {
  std::vector<Part> out;
  Request r;
  r.bucket = bucket;
  r.key = key;
  r.query = {{"uploadId", upload_id}};
  for_each_page(*this, r, "ListPartsResult", "cannot list the parts of " + bucket + "/" + key,
                [&](const pugi::xml_node& result) {
                  for (auto p : result.children("Part")) {
                    Part part;
                    part.number = std::atoi(p.child_value("PartNumber"));
                    part.etag = strip_quotes(p.child_value("ETag"));
                    part.size = std::strtoull(p.child_value("Size"), nullptr, 10);
                    if (part.number > 0) out.push_back(part);
                  }
                  return QueryParams{{"part-number-marker", result.child_value("NextPartNumberMarker")}};
                });
  std::sort(out.begin(), out.end(), [](const Part& a, const Part& b) { return a.number < b.number; });
  return out;
}

std::unique_ptr<MultipartUpload> S3Store::resume_multipart(const std::string& bucket, const std::string& key,
                                                           const std::string& upload_id,
                                                           const std::vector<Part>& parts) {
  std::vector<std::pair<int, std::string>> done;
  for (const Part& p : parts) done.emplace_back(p.number, p.etag);
  return std::make_unique<S3Multipart>(*this, bucket, key, upload_id, std::move(done));
}

void S3Store::abort_multipart(const std::string& bucket, const std::string& key, const std::string& upload_id) {
  Request r;
  r.method = "DELETE";
  r.bucket = bucket;
  r.key = key;
  r.query = {{"uploadId", upload_id}};
  try {
    send(r, fmt::format("cannot abort the upload of {}/{}", bucket, key));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::not_found) throw;  // NoSuchUpload: already gone
  }
}

void S3Store::delete_objects(const std::string& bucket, const std::vector<std::string>& keys) {
  for (std::size_t start = 0; start < keys.size(); start += 1000) {
    std::string xml = "<Delete><Quiet>true</Quiet>";
    for (std::size_t i = start; i < std::min(keys.size(), start + 1000); ++i) {
      xml += "<Object><Key>" + xml_escape(keys[i]) + "</Key></Object>";
    }
    xml += "</Delete>";
    MemorySource body(xml.data(), xml.size());
    Digests d = digest(body);
    Request r;
    r.method = "POST";
    r.bucket = bucket;
    r.query = {{"delete", ""}};
    r.body = &body;
    r.payload_sha256 = d.sha256_hex;
    r.headers = {"Content-MD5: " + d.md5_base64, "Content-Type: application/xml"};
    Response resp = send(r, "cannot delete objects in " + bucket);
    pugi::xml_document doc;
    if (doc.load_buffer(resp.body.data(), resp.body.size())) {
      auto err = doc.child("DeleteResult").child("Error");
      if (err) {
        throw Error(ErrorCode::tool_failed,
                    fmt::format("cannot delete {}/{}: {} ({})", bucket, err.child_value("Key"),
                                err.child_value("Code"), err.child_value("Message")));
      }
    }
  }
}

}  // namespace backupctl
