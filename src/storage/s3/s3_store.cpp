// The requests of an S3 store: buckets, listings, objects, deletes. How each is sent is
// s3_transfer.cpp's; multipart uploads are s3_multipart.cpp's; the XML is s3_xml.cpp's.
#include "storage/s3/s3_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <pugixml.hpp>

#include <algorithm>
#include <cstring>

#include "storage/s3/s3_detail.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"

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

std::string strip_quotes(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

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

std::string md5_base64_of(std::string_view data) {
  Digest md5(DigestKind::md5);
  md5.update(data);
  return md5.finish_base64();
}

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
