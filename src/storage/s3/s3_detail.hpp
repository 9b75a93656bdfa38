// What the parts of the S3 client share (internal to storage/s3/): the XML of S3's answers
// (s3_xml.cpp: errors, listings page by page, escaping), and the request helpers of s3_store.cpp
// that the multipart upload uses too.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "storage/s3/s3_store.hpp"

namespace pugi {
class xml_node;
}

namespace backupctl {

// --- s3_xml.cpp ---

// "<Error><Code>NoSuchBucket</Code><Message>...</Message></Error>" -> {code, message}; when the
// server sends no message (RGW), what the code means. {"", ""} when the body is no such XML.
std::pair<std::string, std::string> s3_error(const std::string& body);

// "Code (message)", or the code alone.
std::string code_and_message(const std::string& code, const std::string& message);

std::string xml_escape(const std::string& s);

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Pages through an S3 listing whose XML root is `root`: `page` takes a page's entries and returns
// the query parameters that ask for the next page (the markers its answer names). The request is
// sent with the first page's query plus those, until a page is not truncated. A truncated page
// that names no next page, or the one just read, is an error: a server repeating a marker would
// otherwise keep the client asking forever.
void for_each_page(S3Store& store, S3Store::Request request, const char* root, const std::string& what,
                   const std::function<QueryParams(const pugi::xml_node&)>& page);

// --- s3_store.cpp ---

// An ETag without its quotes.
std::string strip_quotes(std::string s);

struct Digests {
  std::string sha256_hex;
  std::string md5_base64;
};
// The sha256 (hex) and MD5 (base64) of a body, read from its start; rewound after.
Digests digest(RewindableSource& body);

// The headers of a PUT or of the start of a multipart upload: type, metadata, class, lock.
std::vector<std::string> put_headers(const PutOptions& options);

}  // namespace backupctl
