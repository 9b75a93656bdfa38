// The XML of S3's answers: errors (with what a bare code means: Ceph RGW sends no <Message>),
// listings page by page, and escaping for the bodies backupctl sends.
#include <pugixml.hpp>

#include <map>

#include "storage/s3/s3_detail.hpp"
#include "util/error.hpp"

namespace backupctl {

namespace {

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

}  // namespace

std::pair<std::string, std::string> s3_error(const std::string& body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return {"", ""};
  auto e = doc.child("Error");
  std::string code = e.child_value("Code"), message = e.child_value("Message");
  if (message.empty()) message = describe_code(code);
  return {code, message};
}

std::string code_and_message(const std::string& code, const std::string& message) {
  return message.empty() ? code : code + " (" + message + ")";
}


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

}  // namespace backupctl
