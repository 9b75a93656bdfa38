// A stand-in for an S3 server that resolves dot segments in the request path before it routes
// it, as s3rver does and as MinIO behind an nginx whose `proxy_pass` carries a URI does: the path
// is decoded, its "." and ".." segments resolved (RFC 3986 remove_dot_segments), and then served
// path-style as /bucket/key. It checks no signature (neither do those) and keeps what is PUT, so a
// test sees where a client's request would really land. Enough of S3 for an attachment restore:
// HEAD/PUT bucket, ListObjectsV2 (one page), PUT/GET/HEAD/DELETE object. Ceph RGW, the tests'
// real S3 server, takes keys literally and cannot show this.
#pragma once

#include <httplib.h>
#include <openssl/evp.h>

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "util/encoding.hpp"

namespace backupctl::test {

class NormalizingS3 {
 public:
  NormalizingS3() {
    m_server.set_keep_alive_max_count(1000);
    auto handler = [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); };
    m_server.Get(R"(/.*)", handler);
    m_server.Put(R"(/.*)", handler);
    m_server.Delete(R"(/.*)", handler);
    m_server.Post(R"(/.*)", handler);
    // HEAD is answered by the GET handler (httplib drops the body). The socket listens once
    // bound: a client that comes before the accept loop waits in the backlog.
    m_port = m_server.bind_to_any_port("127.0.0.1");
    m_thread = std::thread([this] { m_server.listen_after_bind(); });
  }
  ~NormalizingS3() {
    m_server.stop();
    m_thread.join();
  }
  NormalizingS3(const NormalizingS3&) = delete;
  NormalizingS3& operator=(const NormalizingS3&) = delete;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(m_port); }

  void create_bucket(const std::string& bucket) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_buckets.insert(bucket);
  }
  void put(const std::string& bucket, const std::string& key, const std::string& bytes) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_objects[bucket + "/" + key] = bytes;
  }
  // "bucket/key" -> bytes.
  std::map<std::string, std::string> objects() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_objects;
  }
  // Every request, as "METHOD /path-as-resolved".
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_requests;
  }

  // RFC 3986 5.2.4 on a path: "/a/b/../../c" -> "/c".
  static std::string remove_dot_segments(const std::string& path) {
    std::vector<std::string> out;
    std::size_t start = 1;
    while (start <= path.size()) {
      std::size_t slash = path.find('/', start);
      std::string seg = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      if (seg == "..") {
        if (!out.empty()) out.pop_back();
      } else if (seg != ".") {
        out.push_back(seg);
      }
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    std::string r;
    for (const auto& s : out) r += "/" + s;
    return r.empty() ? "/" : r;
  }

 private:
  static std::string md5_hex(const std::string& data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr);
    return hex_encode(md, len);
  }

  static std::string xml_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == '&') out += "&amp;";
      else if (c == '<') out += "&lt;";
      else if (c == '>') out += "&gt;";
      else out += c;
    }
    return out;
  }

  void serve(const httplib::Request& req, httplib::Response& res) {
    const std::string path = remove_dot_segments(req.path);
    std::lock_guard<std::mutex> lock(m_mutex);
    m_requests.push_back(req.method + " " + path);
    const std::size_t slash = path.find('/', 1);
    const std::string bucket = path.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
    const std::string key = slash == std::string::npos ? "" : path.substr(slash + 1);
    auto error = [&](int status, const std::string& code) {
      res.status = status;
      res.set_content("<Error><Code>" + code + "</Code><Message></Message></Error>", "application/xml");
    };
    if (bucket.empty()) {
      std::string xml = "<ListAllMyBucketsResult><Buckets>";
      for (const auto& b : m_buckets) xml += "<Bucket><Name>" + xml_escape(b) + "</Name></Bucket>";
      res.set_content(xml + "</Buckets></ListAllMyBucketsResult>", "application/xml");
      return;
    }
    if (key.empty()) {
      if (req.method == "PUT") {
        m_buckets.insert(bucket);
        return;
      }
      if (!m_buckets.count(bucket)) return error(404, "NoSuchBucket");
      if (req.method == "GET" && req.has_param("list-type")) {
        const std::string prefix = req.get_param_value("prefix");
        std::string xml = "<ListBucketResult><Name>" + xml_escape(bucket) + "</Name><IsTruncated>false</IsTruncated>";
        for (const auto& [k, v] : m_objects) {
          if (!k.starts_with(bucket + "/")) continue;
          const std::string name = k.substr(bucket.size() + 1);
          if (!name.starts_with(prefix)) continue;
          xml += "<Contents><Key>" + xml_escape(name) + "</Key><Size>" + std::to_string(v.size()) + "</Size><ETag>\"" +
                 md5_hex(v) + "\"</ETag></Contents>";
        }
        res.set_content(xml + "</ListBucketResult>", "application/xml");
      }
      return;
    }
    const std::string name = bucket + "/" + key;
    if (req.method == "PUT") {
      if (!m_buckets.count(bucket)) return error(404, "NoSuchBucket");
      m_objects[name] = req.body;
      res.set_header("ETag", "\"" + md5_hex(req.body) + "\"");
      return;
    }
    if (req.method == "DELETE") {
      m_objects.erase(name);
      res.status = 204;
      return;
    }
    auto it = m_objects.find(name);
    if (it == m_objects.end()) return error(404, "NoSuchKey");
    res.set_header("ETag", "\"" + md5_hex(it->second) + "\"");
    res.set_content(it->second, "application/octet-stream");
  }

  httplib::Server m_server;
  int m_port = 0;
  std::thread m_thread;
  std::mutex m_mutex;
  std::set<std::string> m_buckets;
  std::map<std::string, std::string> m_objects;
  std::vector<std::string> m_requests;
};

}  // namespace backupctl::test
