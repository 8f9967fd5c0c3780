#include "cli/config_sections.h"

#include <gtest/gtest.h>

namespace kvault::cli {
namespace {

// The flat config of `text`, or the error message prefixed with "error: ".
Json Flatten(std::string_view text) {
  Result<Json> flat = ParseConfigText(text, "config file c.json");
  if (!flat.ok()) return "error: " + flat.status().message();
  return *flat;
}

std::string ErrorOf(std::string_view text) {
  const Json flat = Flatten(text);
  return flat.is_string() ? flat.get<std::string>() : "no error: " + flat.dump();
}

// KV3D's documented starter config, every key at its documented value but the refused
// model.id.
constexpr std::string_view kKv3dStarter = R"({
  "server": {"host": "127.0.0.1", "port": 8080, "threads": 4, "api_key": ""},
  "cache": {"gpu_hot_mb": 2048, "ram_warm_mb": 8192, "ssd_cold_path": ""},
  "model": {"path": "./models/qwen2.5-7b-instruct.Q4_K_M.gguf"}
})";

TEST(ConfigSectionsTest, FlatConfigComesBackUnchanged) {
  const Json flat = Flatten(R"({"model": "m.gguf", "cache-size": 70000, "window": 512})");
  EXPECT_EQ(flat, Json({{"model", "m.gguf"}, {"cache-size", 70000}, {"window", 512}}));
}

TEST(ConfigSectionsTest, Kv3dStarterMapsToServeFlags) {
  const Json flat = Flatten(kKv3dStarter);
  EXPECT_EQ(flat, Json({{"host", "127.0.0.1"},
                        {"port", 8080},
                        {"threads", 4},
                        {"kv_cache_memory", "2048MB"},
                        {"cache_ram_mb", 8192},
                        {"cache_disk_gb", 0},  // "" = no cold tier
                        {"model", "./models/qwen2.5-7b-instruct.Q4_K_M.gguf"}}))
      << flat.dump();
}

TEST(ConfigSectionsTest, NonEmptyValuesOfOptionalKeysAreSet) {
  const Json flat = Flatten(R"({"server": {"api_key": "k1"}, "cache": {"ssd_cold_path": "/ssd"}})");
  EXPECT_EQ(flat, Json({{"api_key", "k1"}, {"cache_dir", "/ssd"}})) << flat.dump();
}

TEST(ConfigSectionsTest, SectionsMixWithTopLevelFlags) {
  const Json flat = Flatten(R"({"window": 1024, "server": {"port": 9000}})");
  EXPECT_EQ(flat, Json({{"window", 1024}, {"port", 9000}})) << flat.dump();
}

TEST(ConfigSectionsTest, UnknownSectionKeyIsOneLineNamingTheSectionsKeys) {
  const std::string error = ErrorOf(R"({"server": {"hots": "0.0.0.0"}})");
  EXPECT_EQ(error.rfind("error: config file c.json: unknown key 'server.hots'", 0), 0) << error;
  EXPECT_NE(error.find("host, port, threads, api_key"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

TEST(ConfigSectionsTest, MebibytesMustBeANumber) {
  EXPECT_EQ(Flatten(R"({"cache": {"gpu_hot_mb": 0.5}})"), Json({{"kv_cache_memory", "0.5MB"}}));
  EXPECT_NE(ErrorOf(R"({"cache": {"gpu_hot_mb": "2GB"}})").find("must be a number of MiB"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"cache": {"gpu_hot_mb": -1}})").find("must be a number of MiB"),
            std::string::npos);
}

TEST(ConfigSectionsTest, KeyWithoutAKvaultSettingIsRefusedNamingWhatToDo) {
  const std::string id = ErrorOf(R"({"model": {"id": "qwen2.5-7b-instruct"}})");
  EXPECT_NE(id.find("'model.id' has no kvault setting"), std::string::npos) << id;
}

TEST(ConfigSectionsTest, ASettingGivenTwiceIsRefused) {
  const std::string error = ErrorOf(R"({"port": 1, "server": {"port": 2}})");
  EXPECT_NE(error.find("'server.port' sets port, which the file sets elsewhere too"),
            std::string::npos)
      << error;
  // The flag's two spellings count as one.
  EXPECT_NE(ErrorOf(R"({"cache-ram-mb": 1, "cache": {"ram_warm_mb": 2}})").find("sets elsewhere"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(R"({"cache_disk_gb": 1, "cache": {"ssd_cold_path": ""}})").find("cache_disk_gb"),
      std::string::npos);
}

TEST(ConfigSectionsTest, SectionThatIsNotAnObjectIsRefused) {
  EXPECT_NE(ErrorOf(R"({"server": 8080})").find("'server' must be an object"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"cache": null})").find("'cache' must be an object"), std::string::npos);
  // A string "model" is the --model flag, not a section.
  EXPECT_EQ(Flatten(R"({"model": "m.gguf", "server": {}})"), Json({{"model", "m.gguf"}}));
}

TEST(ConfigSectionsTest, MalformedTextOrNonObjectIsInvalidArgument) {
  EXPECT_EQ(ParseConfigText("{", "f").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf("[1, 2]"), "error: config file c.json is not an object");
}

}  // namespace
}  // namespace kvault::cli
