// backupctl's S3 requests, signed through libcurl, against the signatures AWS publishes in the S3
// API reference ("Signature Calculations for the Authorization Header: Transferring Payload in a
// Single Chunk", examples GET Object, PUT Object, GET Bucket (List Objects)). A loopback server
// captures the request exactly as sent.
#include <gtest/gtest.h>

#include "storage/s3/s3_store.hpp"
#include "support/s3_capture.hpp"
#include "util/error.hpp"

namespace backupctl {
namespace {

using test::CaptureServer;

S3Store example_store(const CaptureServer& server) {
  S3Settings s;
  s.endpoint = "http://examplebucket.s3.amazonaws.com";
  s.access_key = "AKIAIOSFODNN7EXAMPLE";
  s.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  s.region = "us-east-1";
  s.fixed_amz_date = "20130524T000000Z";
  s.connect_to = "examplebucket.s3.amazonaws.com:80:127.0.0.1:" + std::to_string(server.port());
  s.max_attempts = 1;
  return S3Store(s);
}

constexpr const char* kPrefix =
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, ";

}  // namespace

TEST(SigV4, GetObjectExample) {
  CaptureServer server;
  S3Store store = example_store(server);
  S3Store::Request r;
  r.bucket = "test.txt";  // the example uses a virtual-hosted bucket: the path is the key
  r.headers = {"Range: bytes=0-9"};
  store.send(r, "get");
  EXPECT_EQ(server.header("Authorization"),
            std::string(kPrefix) +
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, PutObjectExample) {
  CaptureServer server;
  S3Store store = example_store(server);
  std::string body = "Welcome to Amazon S3.";
  MemorySource src(body.data(), body.size());
  S3Store::Request r;
  r.method = "PUT";
  r.bucket = "test$file.text";
  r.body = &src;
  r.payload_sha256 = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
  r.headers = {"Date: Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class: REDUCED_REDUNDANCY"};
  store.send(r, "put");
  EXPECT_EQ(server.header("Authorization"),
            std::string(kPrefix) +
                "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
                "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4, ListObjectsExampleWithASortedQuery) {
  CaptureServer server;
  S3Store store = example_store(server);
  S3Store::Request r;
  r.query = {{"prefix", "J"}, {"max-keys", "2"}};  // sent sorted: max-keys first
  store.send(r, "list");
  EXPECT_EQ(server.header("Authorization"),
            std::string(kPrefix) +
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(S3Url, KeysArePercentEncodedPerSegment) {
  S3Settings s;
  s.endpoint = "http://127.0.0.1:9000/";
  S3Store store(s);
  EXPECT_EQ(store.url("docs", "a b/ü+%&=~.pdf", {}),
            "http://127.0.0.1:9000/docs/a%20b/%C3%BC%2B%25%26%3D~.pdf");
  EXPECT_EQ(store.url("docs", "k", {{"uploadId", "x/y+z"}, {"partNumber", "2"}}),
            "http://127.0.0.1:9000/docs/k?partNumber=2&uploadId=x%2Fy%2Bz");
  EXPECT_EQ(store.url("docs", "", {{"uploads", ""}}), "http://127.0.0.1:9000/docs?uploads=");
  S3Settings bare;
  bare.endpoint = "minio:9000";
  EXPECT_EQ(S3Store(bare).url("b", "", {}), "http://minio:9000/b");
}

}  // namespace backupctl

namespace backupctl {

TEST(S3Keys, AreSentByteForByteNeverAsPaths) {
  // "." and ".." segments are data in S3: libcurl would remove them from the path (RFC 3986) and
  // send the PUT to another key, or another bucket. Each segment is percent-encoded; dots stay.
  for (const auto& [key, path] : std::vector<std::pair<std::string, std::string>>{
           {"docs/../../other-bucket/evil", "/staging/docs/../../other-bucket/evil"},
           {"./a/./b", "/staging/./a/./b"},
           {"a b/..%/c", "/staging/a%20b/..%25/c"},
           {"/leading//double", "/staging//leading//double"}}) {
    test::CaptureServer server;
    S3Store store(test::capture_settings(server));
    std::string body = "x";
    MemorySource src(body.data(), body.size());
    store.put_object("staging", key, src, {});
    const std::string& req = server.request();
    EXPECT_EQ(req.substr(0, req.find("\r\n")), "PUT " + path + " HTTP/1.1") << key;
  }
}

}  // namespace backupctl
