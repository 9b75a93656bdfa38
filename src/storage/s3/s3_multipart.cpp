// Multipart uploads on S3: parts sent side by side (each checked by the server with its
// Content-MD5), completed in order, aborted when dropped unfinished; and the open uploads and
// their parts listed, so an upload cut short is resumed instead of sent again.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <pugixml.hpp>

#include <algorithm>
#include <mutex>

#include "storage/s3/s3_detail.hpp"
#include "util/error.hpp"
#include "util/signals.hpp"

namespace backupctl {

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

}  // namespace backupctl
