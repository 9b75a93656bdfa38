// storage/object_store.hpp: the one part-size and ETag rule of every multipart upload.
#include <gtest/gtest.h>

#include <cstdint>

#include "storage/object_store.hpp"
#include "util/digest.hpp"

namespace backupctl {

namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;

std::uint64_t parts_for(std::uint64_t size) {
  const std::uint64_t part = part_size_for(size);
  return size == 0 ? 1 : (size + part - 1) / part;
}

}  // namespace

TEST(Multipart, SmallAndMiddleObjectsGoInEightMebibyteParts) {
  EXPECT_EQ(part_size_for(0), ObjectStore::kMinPartSize);
  EXPECT_EQ(part_size_for(100 * kMiB), 8 * kMiB);
  EXPECT_EQ(part_size_for(8999 * 8 * kMiB), 8 * kMiB);
}

TEST(Multipart, TenThousandPartsOfTheMinimumNeedLargerParts) {
  // 10,000 parts of 8 MiB is S3's limit exactly: the rule takes larger parts well before it.
  const std::uint64_t size = kMaxParts * ObjectStore::kMinPartSize;
  EXPECT_GT(part_size_for(size), ObjectStore::kMinPartSize);
  EXPECT_LE(parts_for(size), 9000u);
  EXPECT_EQ(part_size_for(size) % kMiB, 0u) << "parts are whole MiB";
}

TEST(Multipart, AFiveTebibyteObjectFitsS3sLimits) {
  const std::uint64_t part = part_size_for(kMaxObjectSize);
  EXPECT_LE(parts_for(kMaxObjectSize), kMaxParts);
  EXPECT_LE(parts_for(kMaxObjectSize), 9000u);
  EXPECT_LE(part, std::uint64_t{5} << 30) << "a part is at most 5 GiB";
  EXPECT_GE(part, std::uint64_t{5} << 20) << "a part is at least 5 MiB";
}

TEST(Multipart, EverySizeUpToTheLimitTakesAtMostNineThousandGrowingParts) {
  std::uint64_t previous = 0;
  for (std::uint64_t size = 1; size <= kMaxObjectSize; size = size * 3 / 2 + 7) {
    for (std::uint64_t s : {size - 1, size, size + 1}) {
      ASSERT_LE(parts_for(s), 9000u) << "size " << s;
      ASSERT_EQ(part_size_for(s) % kMiB, 0u) << "size " << s;
    }
    ASSERT_GE(part_size_for(size), previous) << "a larger object got smaller parts at " << size;
    previous = part_size_for(size);
  }
}

TEST(Multipart, TheETagIsTheDigestOfThePartsDigests) {
  const std::string md5s = digest_raw(DigestKind::md5, "abc") + digest_raw(DigestKind::md5, "def");
  // md5(md5("abc") . md5("def")), as S3 computes it (checked with Python's hashlib).
  EXPECT_EQ(multipart_etag(md5s, 2), "4c8e93283780e078db9e0c6b9b3f8043-2");
}

}  // namespace backupctl
