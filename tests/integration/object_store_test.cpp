// One test suite, run against every ObjectStore backend: the directory store, and the S3 store
// talking to Ceph RGW (which checks signatures itself).
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "fixture.hpp"
#include "s3_fixture.hpp"
#include "storage/disk/disk_store.hpp"
#include "storage/s3/s3_store.hpp"
#include "support/s3_capture.hpp"
#include "support/tcp_forwarder.hpp"
#include "util/error.hpp"

namespace backupctl::test {

namespace {

std::string get(ObjectStore& store, const std::string& bucket, const std::string& key,
                ObjectInfo* info = nullptr) {
  io::StringSink sink;
  ObjectInfo i = store.get_object(bucket, key, sink);
  if (info) *info = i;
  return sink.data();
}

void put(ObjectStore& store, const std::string& bucket, const std::string& key, const std::string& data,
         const PutOptions& options = {}) {
  MemorySource src(data.data(), data.size());
  store.put_object(bucket, key, src, options);
}

std::vector<std::string> keys(ObjectStore& store, const std::string& bucket, const std::string& prefix = "") {
  std::vector<std::string> out;
  store.list_objects(bucket, prefix, [&](const ObjectEntry& e) { out.push_back(e.key); });
  return out;
}

struct Backend {
  std::unique_ptr<S3Server> s3;
  std::unique_ptr<TempDir> dir;
  std::unique_ptr<ObjectStore> store;
  bool has_metadata = false;
};

Backend make_backend(const std::string& kind) {
  Backend b;
  if (kind == "s3") {
    b.s3 = std::make_unique<S3Server>();
    b.store = std::make_unique<S3Store>(b.s3->settings());
    b.has_metadata = true;
  } else {
    b.dir = std::make_unique<TempDir>();
    b.store = std::make_unique<DiskStore>(b.dir->path());
  }
  return b;
}

}  // namespace

class ObjectStoreSuite : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { m_backend = make_backend(GetParam()); }
  void TearDown() override {
    if (m_backend.s3) {
      EXPECT_EQ(m_backend.s3->rejections(), 0) << "requests with a bad signature";
    }
  }
  ObjectStore& store() { return *m_backend.store; }
  Backend m_backend;
};

TEST_P(ObjectStoreSuite, BucketsAreCreatedAndListedSorted) {
  EXPECT_TRUE(store().list_buckets().empty());
  EXPECT_FALSE(store().bucket_exists("docs"));
  store().create_bucket("thumbs");
  store().create_bucket("docs");
  EXPECT_TRUE(store().bucket_exists("docs"));
  EXPECT_EQ(store().list_buckets(), (std::vector<std::string>{"docs", "thumbs"}));
}

TEST_P(ObjectStoreSuite, ObjectsRoundTripWithContentTypeAndMetadata) {
  store().create_bucket("docs");
  std::string data = random_bytes(100000, 1);
  put(store(), "docs", "2026/02/contract.pdf", data,
      {"application/pdf", {{"uploaded-by", "kim"}, {"doc-id", "42"}}});
  ObjectInfo info;
  EXPECT_EQ(get(store(), "docs", "2026/02/contract.pdf", &info), data);
  EXPECT_EQ(info.size, data.size());
  ObjectInfo head = store().head_object("docs", "2026/02/contract.pdf");
  EXPECT_EQ(head.size, data.size());
  if (m_backend.has_metadata) {
    EXPECT_EQ(info.content_type, "application/pdf");
    EXPECT_EQ(info.metadata, (std::map<std::string, std::string>{{"doc-id", "42"}, {"uploaded-by", "kim"}}));
    EXPECT_EQ(head.metadata.at("uploaded-by"), "kim");
    EXPECT_EQ(info.etag.size(), 32u);  // single-part ETag: the MD5
  }
}

TEST_P(ObjectStoreSuite, OddKeysAndEmptyObjects) {
  store().create_bucket("docs");
  std::vector<std::string> odd = {
      "with space/and more spaces.txt", "unicode/계약서 스캔 ü é.pdf", "percent%25/100%.txt",
      "plus+and&amp;=.bin", "deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z.dat",
      std::string("long/") + std::string(200, 'x') + "/" + std::string(200, 'y'), "empty", "tilde~(1)'!.txt"};
  for (std::size_t i = 0; i < odd.size(); ++i) {
    put(store(), "docs", odd[i], odd[i] == "empty" ? "" : "content of " + odd[i]);
  }
  auto listed = keys(store(), "docs");
  auto sorted = odd;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(listed, sorted);
  for (const auto& k : odd) {
    EXPECT_EQ(get(store(), "docs", k), k == "empty" ? "" : "content of " + k) << k;
  }
  EXPECT_EQ(store().head_object("docs", "empty").size, 0u);
  EXPECT_EQ(keys(store(), "docs", "unicode/"), std::vector<std::string>{"unicode/계약서 스캔 ü é.pdf"});
}

TEST_P(ObjectStoreSuite, ListingPagesBeyondAThousandKeys) {
  store().create_bucket("many");
  for (int i = 0; i < 1105; ++i) put(store(), "many", "k/" + std::to_string(100000 + i), "x");
  auto listed = keys(store(), "many");
  ASSERT_EQ(listed.size(), 1105u);
  EXPECT_EQ(listed.front(), "k/100000");
  EXPECT_EQ(listed.back(), "k/101104");
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end()));
}

TEST_P(ObjectStoreSuite, MultipartUploadOfALargeObject) {
  store().create_bucket("big");
  std::string data = random_bytes(2 * ObjectStore::kMinPartSize + 12345, 2);
  {
    auto upload = store().start_multipart("big", "video.mp4", {"video/mp4", {{"k", "v"}}});
    for (int part = 0; part * ObjectStore::kMinPartSize < data.size(); ++part) {
      std::size_t off = part * ObjectStore::kMinPartSize;
      MemorySource src(data.data() + off, std::min<std::size_t>(ObjectStore::kMinPartSize, data.size() - off));
      upload->upload_part(part + 1, src);
    }
    upload->complete();
  }
  ObjectInfo info;
  EXPECT_EQ(get(store(), "big", "video.mp4", &info), data);
  if (m_backend.has_metadata) {
    EXPECT_EQ(info.content_type, "video/mp4");
  }
  // Abandoned: nothing appears (the upload is aborted).
  {
    auto upload = store().start_multipart("big", "abandoned.bin", {});
    MemorySource src(data.data(), ObjectStore::kMinPartSize);
    upload->upload_part(1, src);
  }
  EXPECT_EQ(keys(store(), "big"), std::vector<std::string>{"video.mp4"});
}

TEST_P(ObjectStoreSuite, DeleteAndMissingThings) {
  store().create_bucket("docs");
  put(store(), "docs", "a", "1");
  put(store(), "docs", "b & c", "2");
  put(store(), "docs", "d", "3");
  store().delete_objects("docs", {"a", "b & c"});
  EXPECT_EQ(keys(store(), "docs"), std::vector<std::string>{"d"});
  try {
    store().head_object("docs", "a");
    FAIL() << "head of a deleted object";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::not_found);
  }
  EXPECT_THROW(keys(store(), "no-such-bucket"), Error);
}

INSTANTIATE_TEST_SUITE_P(Backends, ObjectStoreSuite, ::testing::Values("disk", "s3"),
                         [](const auto& info) { return info.param; });

TEST(S3Store, WrongSecretIsOneClearErrorWithoutRetries) {
  S3Server server;
  S3Settings s = server.settings();
  s.secret_key = "not-the-secret";
  S3Store store(s);
  try {
    store.list_buckets();
    FAIL() << "a wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::connection);
    EXPECT_NE(std::string(e.what()).find("access denied"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("SignatureDoesNotMatch"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("MINIO_SECRET_KEY"), std::string::npos);
  }
  EXPECT_EQ(server.rejections(), 1) << "a 403 must not be retried";
}

TEST(S3Store, ARegionOtherThanUsEast1CreatesBucketsOnAwsAndOnRgw) {
  // AWS needs the region as a LocationConstraint outside us-east-1; RGW refuses one that is not
  // its zonegroup (InvalidLocationConstraint) and creates the bucket without it.
  S3Server server;
  S3Settings s = server.settings();
  s.region = "eu-central-1";
  S3Store store(s);
  store.create_bucket("eu-bucket");
  EXPECT_TRUE(store.bucket_exists("eu-bucket"));
  std::string body = "x";
  MemorySource src(body.data(), body.size());
  store.put_object("eu-bucket", "k", src, {});
  io::StringSink got;
  store.get_object("eu-bucket", "k", got);
  EXPECT_EQ(got.data(), "x");
}

TEST(S3Store, UsesItsOwnUserAgentAndNamesErrorsRgwSendsWithoutAMessage) {
  S3Server server;
  S3Store store(server.settings());
  try {
    io::StringSink sink;
    store.get_object("no-such-bucket", "k", sink);
    FAIL() << "a missing bucket was read";
  } catch (const Error& e) {
    // RGW: <Code>NoSuchBucket</Code><Message></Message>.
    EXPECT_NE(std::string(e.what()).find("NoSuchBucket (the bucket does not exist)"), std::string::npos) << e.what();
  }
  std::string log = server.access_log();
  EXPECT_NE(log.find("\"backupctl/"), std::string::npos) << "no backupctl User-Agent in RGW's access log";
}

// The ranges a parallel download of an off-site copy asks for: exactly those bytes (the last
// range short), and, naming the ETag first seen, a refusal once the object was replaced, so a
// download never mixes two versions.
TEST(S3Store, ARangedGetIsExactAndRefusesAReplacedObject) {
  S3Server server;
  S3Store store(server.settings());
  store.create_bucket("ranges");
  const std::string body = random_bytes(3000000, 3);
  put(store, "ranges", "k", body);
  const std::string etag = store.head_object("ranges", "k").etag;
  for (auto [first, last] : {std::pair<std::uint64_t, std::uint64_t>{0, 0}, {1000, 1048575}, {2999000, 2999999}}) {
    io::StringSink got;
    store.get_range("ranges", "k", first, last, got, etag);
    EXPECT_EQ(got.data(), body.substr(first, last - first + 1)) << first << "-" << last;
  }
  put(store, "ranges", "k", "replaced");
  io::StringSink got;
  try {
    store.get_range("ranges", "k", 0, 7, got, etag);
    FAIL() << "a replaced object was read under the old ETag: " << got.data();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("PreconditionFailed"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(got.data().empty());
}

// The connection drops in the middle of a range (after the headers and 700 kB of the body):
// the range is asked again from the first byte that did not arrive, and what reaches the sink is
// exactly the range, once.
TEST(S3Store, ARangeCutOffMidwayResumesWhereItStopped) {
  S3Server server;
  S3Store direct(server.settings());
  direct.create_bucket("cut");
  const std::string body = random_bytes(3000000, 5);
  put(direct, "cut", "k", body);
  const std::string etag = direct.head_object("cut", "k").etag;
  test::TcpForwarder network(server.port());
  S3Settings s = server.settings();
  s.endpoint = "http://127.0.0.1:" + std::to_string(network.port());
  S3Store store(s);
  network.cut_after(700000);
  io::StringSink got;
  store.get_range("cut", "k", 100000, 2599999, got, etag);
  EXPECT_EQ(network.cuts(), 1) << "the connection was not cut: the test proves nothing";
  EXPECT_EQ(got.data().size(), 2500000u);
  EXPECT_TRUE(got.data() == body.substr(100000, 2500000)) << "the resumed range is not the object's bytes";
}

// Each of the three paged listings asks for the next page with the markers the last one named,
// and returns the entries of every page.
TEST(S3Store, ListingsAskForTheNextPageWithItsMarkersAndKeepEveryPage) {
  auto second_request_line = [](CaptureServer& server) {
    const std::string& r = server.requests().at(1);
    return r.substr(0, r.find("\r\n"));
  };
  {
    CaptureServer server("HTTP/1.1 200 OK",
                         {"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t/1+</NextContinuationToken>"
                          "<Contents><Key>a</Key><Size>1</Size><ETag>\"e\"</ETag></Contents></ListBucketResult>",
                          "<ListBucketResult><IsTruncated>false</IsTruncated>"
                          "<Contents><Key>b</Key><Size>2</Size><ETag>\"f\"</ETag></Contents></ListBucketResult>"});
    S3Store store(capture_settings(server));
    std::vector<std::string> keys;
    store.list_objects("bk", "", [&](const ObjectEntry& e) { keys.push_back(e.key); });
    EXPECT_EQ(keys, (std::vector<std::string>{"a", "b"}));
    EXPECT_NE(second_request_line(server).find("continuation-token=t%2F1%2B&"), std::string::npos) << second_request_line(server);
  }
  {
    CaptureServer server("HTTP/1.1 200 OK",
                         {"<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>p/k</NextKeyMarker>"
                          "<NextUploadIdMarker>u1</NextUploadIdMarker><Upload><Key>p/k</Key><UploadId>u1</UploadId></Upload>"
                          "</ListMultipartUploadsResult>",
                          "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
                          "<Upload><Key>p/k</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>"});
    S3Store store(capture_settings(server));
    auto uploads = store.open_uploads("bk", "p/");
    ASSERT_EQ(uploads.size(), 2u);
    EXPECT_EQ(uploads[1].id, "u2");
    EXPECT_NE(second_request_line(server).find("key-marker=p%2Fk&"), std::string::npos) << second_request_line(server);
    EXPECT_NE(second_request_line(server).find("upload-id-marker=u1"), std::string::npos) << second_request_line(server);
  }
  {
    CaptureServer server("HTTP/1.1 200 OK",
                         {"<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>1</NextPartNumberMarker>"
                          "<Part><PartNumber>1</PartNumber><ETag>\"e\"</ETag><Size>5</Size></Part></ListPartsResult>",
                          "<ListPartsResult><IsTruncated>false</IsTruncated>"
                          "<Part><PartNumber>2</PartNumber><ETag>\"f\"</ETag><Size>6</Size></Part></ListPartsResult>"});
    S3Store store(capture_settings(server));
    auto parts = store.list_parts("bk", "k", "id");
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[1].number, 2);
    EXPECT_EQ(parts[1].size, 6u);
    EXPECT_NE(second_request_line(server).find("part-number-marker=1&"), std::string::npos) << second_request_line(server);
  }
}

// A server (or whoever answers in its place) that says every page of a listing is truncated and
// names the same next page again would keep the client asking forever: the second such page is
// an error, for each of the three paged listings.
TEST(S3Store, AListingThatRepeatsItsNextPageIsAnErrorNotALoop) {
  struct Case {
    const char* what;
    std::string page;
    std::function<void(S3Store&)> list;
  };
  const std::vector<Case> cases = {
      {"objects",
       "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>"
       "<Contents><Key>a</Key><Size>1</Size><ETag>\"e\"</ETag></Contents></ListBucketResult>",
       [](S3Store& s) { s.list_objects("b", "", [](const ObjectEntry&) {}); }},
      {"open uploads",
       "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated><NextKeyMarker>k</NextKeyMarker>"
       "<NextUploadIdMarker>u</NextUploadIdMarker></ListMultipartUploadsResult>",
       [](S3Store& s) { s.open_uploads("b", "p/"); }},
      {"parts",
       "<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>1</NextPartNumberMarker>"
       "<Part><PartNumber>1</PartNumber><ETag>\"e\"</ETag><Size>5</Size></Part></ListPartsResult>",
       [](S3Store& s) { s.list_parts("b", "k", "id"); }},
      {"parts, no marker at all",
       "<ListPartsResult><IsTruncated>true</IsTruncated></ListPartsResult>",
       [](S3Store& s) { s.list_parts("b", "k", "id"); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    CaptureServer server("HTTP/1.1 200 OK", 3, c.page);
    S3Store store(capture_settings(server));
    try {
      c.list(store);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::tool_failed);
      EXPECT_NE(std::string(e.what()).find("names no next page"), std::string::npos) << e.what();
    }
  }
}

TEST(S3Store, EndpointDownFailsAfterBoundedRetries) {
  S3Settings s;
  s.endpoint = "http://127.0.0.1:1";
  s.access_key = "a";
  s.secret_key = "b";
  s.max_attempts = 3;
  S3Store store(s);
  auto start = std::chrono::steady_clock::now();
  try {
    store.list_buckets();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::connection);
    EXPECT_NE(std::string(e.what()).find("after 3 attempts"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace backupctl::test
