// Secret masking in config previews: whatever the syntax, no secret value shows; other lines are
// left as they are.
#include <gtest/gtest.h>

#include "command/config_mask.hpp"

namespace backupctl {
namespace {

TEST(MaskSecrets, EverySyntaxOfAConfigFile) {
  const std::string text =
      "LOG_LEVEL=debug\n"
      "export AWS_SECRET_ACCESS_KEY='s-export'\n"
      "POSTGRES_PASSWORD=s-env\n"
      "REDIS_PASS=s-pass-suffix\n"
      "REDIS_URL=redis://:s-url-nouser@redis:6379/0\n"
      "DATABASE_URL=postgresql://app:s-url-user@db/archive\n"
      "services:\n"
      "  db:\n"
      "    image: postgres:15\n"
      "    environment:\n"
      "      - POSTGRES_PASSWORD=s-list\n"
      "      - \"MINIO_ROOT_PASSWORD=s-quoted-list\"\n"
      "    environment2: [\"A=b\", \"API_TOKEN=s-inline-list\"]\n"
      "    env3: { DB_PASSWORD: \"s-flow-map\", LOG: x }\n"
      "  api:\n"
      "    command: [\"serve\", \"--db-password\", \"s-flag-list\"]\n"
      "    entrypoint: app --token s-flag-space --verbose\n"
      "    healthcheck: curl --api-key=s-flag-eq http://x\n"
      "    password: |\n"
      "      s-block-1\n"
      "      s-block-2\n"
      "    after_block: visible\n"
      "{\"apiKey\": \"s-json\", \"name\": \"archive\"}\n"
      "-----BEGIN RSA PRIVATE KEY-----\n"
      "s-pem-body\n"
      "-----END RSA PRIVATE KEY-----\n";
  std::string masked = mask_secrets(text);
  for (const char* secret : {"s-export", "s-env", "s-pass-suffix", "s-url-nouser", "s-url-user", "s-list",
                             "s-quoted-list", "s-inline-list", "s-flow-map", "s-flag-list", "s-flag-space",
                             "s-flag-eq", "s-block-1", "s-block-2", "s-json", "s-pem-body"}) {
    EXPECT_EQ(masked.find(secret), std::string::npos) << secret << " shown:\n" << masked;
  }
  for (const char* kept : {"LOG_LEVEL=debug\n", "image: postgres:15\n", "after_block: visible\n", "\"name\": \"archive\"",
                           "      - POSTGRES_PASSWORD=****\n", "redis://:****@redis:6379/0", "postgresql://app:****@db/archive",
                           "\"--db-password\", \"****\"", "-----END RSA PRIVATE KEY-----"}) {
    EXPECT_NE(masked.find(kept), std::string::npos) << kept << " missing:\n" << masked;
  }
}

TEST(MaskSecrets, AChangedSecretIsSaidWithoutShowingIt) {
  std::string before = "POSTGRES_PASSWORD=old-one\nLOG_LEVEL=info\n";
  std::string after = "POSTGRES_PASSWORD=new-one\nLOG_LEVEL=info\n";
  std::string shown = mask_secrets(after, before);
  EXPECT_NE(shown.find("POSTGRES_PASSWORD=****  # (secret changed)"), std::string::npos) << shown;
  EXPECT_EQ(mask_secrets(before, before).find("secret changed"), std::string::npos);
  EXPECT_EQ(shown.find("new-one"), std::string::npos);
}

}  // namespace
}  // namespace backupctl
