#include "kvault/memory/hedge_detector.h"

#include <gtest/gtest.h>

namespace kvault::memory {
namespace {

// Pushes the pieces in order; returns what the client would receive, up to a hit.
struct Stream {
  std::string received;
  bool hit = false;
  HedgeOutput last;
};

Stream StreamThrough(HedgeDetector& detector, const std::vector<std::string>& pieces) {
  Stream stream;
  for (const std::string& piece : pieces) {
    stream.last = detector.Push(piece);
    stream.received += stream.last.text;
    if (stream.last.hit) {
      stream.hit = true;
      return stream;
    }
  }
  stream.received += detector.Flush();
  return stream;
}

std::vector<std::string> Characters(std::string_view text) {
  std::vector<std::string> pieces;
  for (char c : text) pieces.emplace_back(1, c);
  return pieces;
}

TEST(HedgeDetectorTest, PlainTextPassesThroughAtOnce) {
  HedgeDetector detector;
  const HedgeOutput out = detector.Push("The capital of France is Paris.");
  EXPECT_FALSE(out.hit);
  EXPECT_EQ(out.text, "The capital of France is Paris.");
  EXPECT_EQ(detector.Flush(), "");
}

TEST(HedgeDetectorTest, PossiblePhraseStartIsHeldUntilItResolves) {
  HedgeDetector detector;
  HedgeOutput out = detector.Push("Well, if I");
  EXPECT_EQ(out.text, "Well, ");
  out = detector.Push(" rec");
  EXPECT_EQ(out.text, "");
  out = detector.Push("all, your dog is Rex.");
  EXPECT_TRUE(out.hit);
  EXPECT_EQ(out.text, "");
  EXPECT_EQ(out.phrase, "if i recall");
  EXPECT_EQ(out.before_hit, "Well, ");
}

TEST(HedgeDetectorTest, PhraseSplitIntoSingleCharactersIsNeverPartlySent) {
  HedgeDetector detector;
  const Stream stream =
      StreamThrough(detector, Characters("Sure! I don't remember what you said."));
  EXPECT_TRUE(stream.hit);
  EXPECT_EQ(stream.received, "Sure! ");
  EXPECT_EQ(stream.last.before_hit, "Sure! ");
  EXPECT_EQ(stream.last.phrase, "i don't remember");
}

TEST(HedgeDetectorTest, CaseWhitespaceAndCurlyApostrophesAreNormalized) {
  for (const std::vector<std::string>& pieces :
       std::vector<std::vector<std::string>>{{"OK. IF  I\nRECALL it"},
                                             {"OK. I don", "\xe2\x80\x99t remember"},
                                             {"OK. I don\xe2\x80", "\x99t remember"},
                                             {"OK. I\xe2\x80\x99m not sure what you ", "SAID"}}) {
    HedgeDetector detector;
    const Stream stream = StreamThrough(detector, pieces);
    EXPECT_TRUE(stream.hit) << pieces[0];
    EXPECT_EQ(stream.received, "OK. ") << pieces[0];
  }
}

TEST(HedgeDetectorTest, NearMissesAreReleasedWhole) {
  for (const std::string text : {"if I recalibrate the scale", "I don't remain", "wif I recall",
                                 "I can recall it", "remind me to call", "if I", "I do"}) {
    HedgeDetector detector;
    const Stream pieces = StreamThrough(detector, Characters(text));
    EXPECT_FALSE(pieces.hit) << text;
    EXPECT_EQ(pieces.received, text);
    HedgeDetector whole;
    EXPECT_EQ(StreamThrough(whole, {text}).received, text);
  }
}

TEST(HedgeDetectorTest, EarliestPhraseWinsAndWatchingContinuesAfterAHit) {
  HedgeDetector detector({"remember", "as I recall"});
  HedgeOutput out = detector.Push("A, as I recall, you remember");
  EXPECT_TRUE(out.hit);
  EXPECT_EQ(out.text, "A, ");
  EXPECT_EQ(out.phrase, "as i recall");
  out = detector.Push("B. Then ");
  EXPECT_FALSE(out.hit);
  out = detector.Push("I remember.");
  EXPECT_TRUE(out.hit);
  EXPECT_EQ(out.text, "I ");
  EXPECT_EQ(out.before_hit, "A, B. Then I ");
}

TEST(HedgeDetectorTest, ConfiguredListReplacesTheDefaults) {
  HedgeDetector none({"", "  "});
  EXPECT_TRUE(none.phrases().empty());
  EXPECT_EQ(none.Push("if I").text, "if I");
  HedgeDetector custom({"  Ich  Erinnere  "});
  EXPECT_EQ(custom.phrases(), std::vector<std::string>{"ich erinnere"});
  EXPECT_FALSE(custom.Push("if I recall").hit);
  EXPECT_TRUE(custom.Push(" ich erinnere mich").hit);
  EXPECT_FALSE(HedgeDetector::DefaultPhrases().empty());
  EXPECT_EQ(NormalizeHedgeText(" I\xe2\x80\x99M\t Sure "), "i'm sure");
}

}  // namespace
}  // namespace kvault::memory
