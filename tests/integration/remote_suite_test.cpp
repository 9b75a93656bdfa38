// One test suite, run against both remotes (storage/remote.hpp): an S3 bucket under a prefix on
// Ceph RGW (which checks every signature) and a folder. What push and fetch rely on: a copy goes
// up whole or not at all, is listed with its size (and on S3 the ETag a good copy has), comes
// back byte for byte; a file that no longer matches its sha256 is not copied; names that are
// not a remote's own are refused, and never listed; an unfinished copy is dropped only when
// abandoned.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>

#include "fixture.hpp"
#include "s3_fixture.hpp"
#include "storage/object_store.hpp"
#include "storage/remote.hpp"
#include "storage/s3/s3_store.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"

namespace backupctl::test {

namespace {

std::string sha256_hex(const std::string& bytes) { return digest_hex(DigestKind::sha256, bytes); }

class RemoteSuite : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    config.backup_dir = local.path() / "backups";
    RemoteConfig rc;
    if (GetParam() == "s3") {
      s3 = std::make_unique<S3Server>();
      S3Store(s3->settings()).create_bucket("offsite");
      rc.type = RemoteConfig::Type::s3;
      rc.url = "s3://offsite/p";
      rc.bucket = "offsite";
      rc.prefix = "p/";
      rc.endpoint = s3->endpoint();
      rc.access_key = s3->access_key();
      rc.secret_key = s3->secret_key();
    } else {
      rc.type = RemoteConfig::Type::folder;
      rc.dir = folder.path();
      rc.url = "file://" + folder.path().string();
    }
    config.remote = rc;
    remote = make_remote(config);
  }
  void TearDown() override {
    if (s3) {
      EXPECT_EQ(s3->rejections(), 0) << "requests with a bad signature";
    }
  }

  // A local file of `bytes`, to copy.
  fs::path local_file(const std::string& name, const std::string& bytes) {
    fs::path p = local.path() / name;
    write_file_atomic(p, bytes, 0600);
    return p;
  }

  PutResult put(const fs::path& file, const std::string& name, const std::string& sha256) {
    std::atomic<std::uint64_t> sent{0};
    PutResult r = remote->put(file, name, sha256, sent);
    EXPECT_EQ(sent.load(), r.sent);
    return r;
  }

  std::string get(const std::string& name) {
    io::StringSink sink;
    remote->get(name, sink);
    return sink.data();
  }

  // Writes `bytes` under `name` behind the remote's back (another writer, or an attacker).
  void plant(const std::string& name, const std::string& bytes) {
    if (s3) {
      MemorySource body(bytes.data(), bytes.size());
      S3Store(s3->settings()).put_object("offsite", "p/" + name, body, PutOptions{});
    } else {
      make_dirs((folder.path() / name).parent_path());
      write_file_atomic(folder.path() / name, bytes, 0600);
    }
  }

  // A copy of `name` started and cut short: an open multipart upload, or a .partial.
  void start_unfinished(const std::string& name) {
    if (s3) {
      S3Store store(s3->settings());
      auto upload = store.start_multipart("offsite", "p/" + name, PutOptions{});
      std::string part(5u << 20, 'x');
      MemorySource body(part.data(), part.size());
      upload->upload_part(1, body, "");
      upload->keep_open();
    } else {
      plant(name + ".partial", "half");
    }
  }

  std::unique_ptr<S3Server> s3;
  TempDir folder{"backupctl-remote"}, local{"backupctl-local"};
  Config config;
  std::unique_ptr<Remote> remote;
};

TEST_P(RemoteSuite, ACopyIsListedWithItsSizeAndComesBackByteForByte) {
  // One small file (one PUT on S3) and one over kRemoteSinglePut (parts side by side).
  const std::string small = random_bytes(3000, 1), large = random_bytes(kRemoteSinglePut + (3u << 20), 2);
  const fs::path small_file = local_file("small", small), large_file = local_file("large", large);
  PutResult r1 = put(small_file, "db/archive_archive_20261201_031500.dump", sha256_hex(small));
  PutResult r2 = put(large_file, "objects/objects_minio_20261201_031500.tar.gz", sha256_hex(large));
  EXPECT_EQ(r1.sent, small.size());
  EXPECT_EQ(r2.sent, large.size());
  EXPECT_FALSE(r1.resumed);

  auto listing = remote->list();
  ASSERT_EQ(listing.size(), 2u);
  EXPECT_EQ(listing["db/archive_archive_20261201_031500.dump"].size, small.size());
  EXPECT_EQ(listing["objects/objects_minio_20261201_031500.tar.gz"].size, large.size());
  if (s3) {
    // The ETag a listing shows for a good copy, computed from the file alone.
    EXPECT_EQ(listing["db/archive_archive_20261201_031500.dump"].etag, expected_etag(small_file, part_size_for(small.size())));
    EXPECT_EQ(listing["objects/objects_minio_20261201_031500.tar.gz"].etag,
              expected_etag(large_file, part_size_for(large.size())));
    EXPECT_NE(listing["objects/objects_minio_20261201_031500.tar.gz"].etag.find('-'), std::string::npos) << "not multipart";
  }
  EXPECT_EQ(get("db/archive_archive_20261201_031500.dump"), small);
  EXPECT_EQ(get("objects/objects_minio_20261201_031500.tar.gz"), large);
}

TEST_P(RemoteSuite, AFileThatNoLongerMatchesItsSha256IsNotCopied) {
  for (std::size_t size : {std::size_t{5000}, std::size_t{kRemoteSinglePut + 1}}) {
    SCOPED_TRACE(size);
    const fs::path file = local_file("changed", random_bytes(size, 3));
    try {
      put(file, "db/archive_archive_20261201_031500.dump", sha256_hex("what the meta said"));
      ADD_FAILURE() << "a file that does not match its meta was copied";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::verification) << e.what();
      EXPECT_NE(std::string(e.what()).find("does not match the sha256 of its meta"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(remote->list().empty()) << "something of it is listed";
  }
}

TEST_P(RemoteSuite, NamesThatAreNotTheRemotesOwnAreRefusedAndNeverListed) {
  const fs::path file = local_file("f", "bytes");
  for (const char* bad : {"../escape.dump", "db/../../escape.dump", "other/archive.dump", "db/sub/archive.dump", "db/", "db",
                          "wal/x/000000010000000000000001.zst", "wal/1/../000000010000000000000001.zst", "wal/1/a/b.zst",
                          "wal/1/.hidden", "wal/1/", "wal//000000010000000000000001.zst", "wal/123456789012345678901/x.zst"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(remote_name_ok(bad));
    EXPECT_THROW(put(file, bad, ""), Error);
    EXPECT_THROW(get(bad), Error);
    EXPECT_THROW(remote->remove({bad}), Error);
  }
  // What others left in the remote's folders that is not a backup name of ours.
  plant("notes.txt", "not ours");
  plant("db/sub/archive.dump", "not a plain name");
  plant("config/config_20261201_031500.tar.gz", "ours");
  plant("wal/12/sub/000000010000000000000001.zst", "too deep");
  plant("wal/x/000000010000000000000001.zst", "not a cluster");
  plant("wal/12/000000010000000000000001.zst.age", "ours");
  auto listing = remote->list();
  ASSERT_EQ(listing.size(), 2u) << ::testing::PrintToString(listing.size());
  EXPECT_EQ(listing.begin()->first, "config/config_20261201_031500.tar.gz");
  EXPECT_EQ(std::next(listing.begin())->first, "wal/12/000000010000000000000001.zst.age");
}

TEST_P(RemoteSuite, RemoveDeletesAndAMissingFileIsNotFound) {
  const fs::path file = local_file("f", "bytes");
  put(file, "config/config_20261201_031500.tar.gz", sha256_hex("bytes"));
  remote->remove({"config/config_20261201_031500.tar.gz", "config/config_20261130_031500.tar.gz"});
  EXPECT_TRUE(remote->list().empty());
  try {
    get("config/config_20261201_031500.tar.gz");
    ADD_FAILURE() << "a removed file came back";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::not_found) << e.what();
  }
}

TEST_P(RemoteSuite, AnUnfinishedCopyIsNeverListedAndIsDroppedOnlyWhenAbandoned) {
  start_unfinished("objects/objects_disk_20200101_000000.tar.gz.age");
  start_unfinished("objects/objects_disk_20991231_000000.tar.gz.age");
  EXPECT_TRUE(remote->list().empty()) << "an unfinished copy looks finished";
  auto dropped = remote->drop_unfinished([](const std::string& name, Clock::time_point started) {
    EXPECT_LT(std::chrono::abs(Clock::now() - started), std::chrono::hours(1)) << name << ": the start time was misread";
    return name == "objects/objects_disk_20200101_000000.tar.gz.age";
  });
  EXPECT_EQ(dropped, std::vector<std::string>{"objects/objects_disk_20200101_000000.tar.gz.age"});
  // The other is left, and is dropped once abandoned.
  EXPECT_EQ(remote->drop_unfinished([](const std::string&, Clock::time_point) { return true; }),
            std::vector<std::string>{"objects/objects_disk_20991231_000000.tar.gz.age"});
  EXPECT_TRUE(remote->drop_unfinished([](const std::string&, Clock::time_point) { return true; }).empty());
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Remotes, RemoteSuite, ::testing::Values("folder", "s3"),
                         [](const auto& info) { return info.param; });

}  // namespace backupctl::test
