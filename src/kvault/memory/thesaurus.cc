#include "kvault/memory/thesaurus.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include <fcntl.h>
#include <unistd.h>

#include "kvault/base/file.h"
#include "kvault/base/log.h"
#include "kvault/base/status_macros.h"

namespace kvault::memory {
namespace {

// WordNet's morphy suffix rules (ref: WordNet morph(3WN)), per part of speech.
struct Suffix {
  std::string_view from, to;
};
constexpr Suffix kNounSuffixes[] = {{"s", ""},      {"ses", "s"},   {"xes", "x"},   {"zes", "z"},
                                    {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"}};
constexpr Suffix kVerbSuffixes[] = {{"s", ""},   {"ies", "y"}, {"es", "e"},  {"es", ""},
                                    {"ed", "e"}, {"ed", ""},   {"ing", "e"}, {"ing", ""}};
constexpr Suffix kAdjSuffixes[] = {{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}};

struct PartFiles {
  const char* name;  // "noun": index.noun, data.noun, noun.exc
  std::span<const Suffix> suffixes;
};
constexpr PartFiles kParts[] = {
    {"noun", kNounSuffixes}, {"verb", kVerbSuffixes}, {"adj", kAdjSuffixes}, {"adv", {}}};

// Senses whose synonyms are taken, and hyponym synsets read, per word and part of speech.
constexpr size_t kSynonymSenses = 2;
constexpr size_t kMaxHyponyms = 12;

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (pos < line.size()) {
    const size_t end = std::min(line.find(' ', pos), line.size());
    if (end > pos) fields.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  return fields;
}

// "moving_picture" -> "moving picture"; adjective markers "(a)" dropped; lowercased.
std::string Lemma(std::string_view word) {
  std::string out;
  for (char c : word.substr(0, word.find('('))) {
    out.push_back(c == '_' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

}  // namespace

struct Thesaurus::Part {
  std::span<const Suffix> suffixes;
  std::string index_text;
  std::vector<std::string_view> index;  // lines, sorted by lemma (WordNet's order)
  std::map<std::string, std::string, std::less<>> exceptions;  // inflected -> base
  int data_fd = -1;

  ~Part() {
    if (data_fd >= 0) ::close(data_fd);
  }

  // The index line of `lemma` ("" if none); lemma with '_' for spaces.
  std::string_view Find(std::string_view lemma) const {
    auto it = std::lower_bound(index.begin(), index.end(), lemma,
                               [](std::string_view line, std::string_view key) {
                                 return line.substr(0, line.find(' ')) < key;
                               });
    if (it == index.end() || it->substr(0, it->find(' ')) != lemma) return {};
    return *it;
  }

  // The index line of `word`'s base form: itself, an exception, or a suffix rule's result.
  std::string_view FindBase(const std::string& word) const {
    if (std::string_view line = Find(word); !line.empty()) return line;
    if (auto it = exceptions.find(word); it != exceptions.end()) return Find(it->second);
    for (const Suffix& s : suffixes) {
      if (word.size() <= s.from.size() || !word.ends_with(s.from)) continue;
      const std::string base = word.substr(0, word.size() - s.from.size()) + std::string(s.to);
      if (std::string_view line = Find(base); !line.empty()) return line;
    }
    return {};
  }

  // The data line of the synset at byte `offset` ("" if unreadable).
  std::string Synset(int64_t offset) const {
    std::string line(16384, '\0');
    const ssize_t n = ::pread(data_fd, line.data(), line.size(), offset);
    if (n <= 0) return "";
    line.resize(static_cast<size_t>(n));
    return line.substr(0, line.find('\n'));
  }
};

// A synset's words and pointers, parsed from its data line.
struct SynsetLine {
  std::vector<std::string> words;
  std::vector<int64_t> hypernyms, hyponyms;  // offsets in the same part's data file
};

static SynsetLine ParseSynset(std::string_view line) {
  SynsetLine synset;
  const std::vector<std::string_view> f = Fields(line.substr(0, line.find('|')));
  if (f.size() < 4) return synset;
  const size_t n_words = std::strtoul(std::string(f[3]).c_str(), nullptr, 16);
  size_t i = 4;
  for (size_t w = 0; w < n_words && i + 1 < f.size(); ++w, i += 2)
    synset.words.push_back(Lemma(f[i]));
  if (i >= f.size()) return synset;
  const size_t n_pointers = std::strtoul(std::string(f[i]).c_str(), nullptr, 10);
  ++i;
  for (size_t p = 0; p < n_pointers && i + 3 < f.size(); ++p, i += 4) {
    const int64_t offset = std::strtoll(std::string(f[i + 1]).c_str(), nullptr, 10);
    if (f[i + 3] != "0000") continue;  // a pointer between two words, not two synsets
    if (f[i] == "@" || f[i] == "@i") synset.hypernyms.push_back(offset);
    if (f[i] == "~" || f[i] == "~i") synset.hyponyms.push_back(offset);
  }
  return synset;
}

Thesaurus::Thesaurus() = default;
Thesaurus::~Thesaurus() = default;

Result<std::unique_ptr<Thesaurus>> Thesaurus::Open(const std::string& dir) {
  auto thesaurus = std::unique_ptr<Thesaurus>(new Thesaurus());
  for (const PartFiles& files : kParts) {
    auto part = std::make_unique<Part>();
    part->suffixes = files.suffixes;
    KV_ASSIGN_OR_RETURN(part->index_text,
                        ReadFileToString(dir + "/index." + std::string(files.name)));
    std::string_view text = part->index_text;
    for (size_t pos = 0; pos < text.size();) {
      const size_t end = std::min(text.find('\n', pos), text.size());
      if (text[pos] != ' ') part->index.push_back(text.substr(pos, end - pos));  // not licence
      pos = end + 1;
    }
    const Result<std::string> exc = ReadFileToString(dir + "/" + files.name + ".exc");
    std::string_view exc_text = exc.ok() ? std::string_view(*exc) : std::string_view();
    for (size_t pos = 0; pos < exc_text.size();) {
      const size_t end = std::min(exc_text.find('\n', pos), exc_text.size());
      const std::vector<std::string_view> f = Fields(exc_text.substr(pos, end - pos));
      if (f.size() >= 2) part->exceptions.emplace(std::string(f[0]), std::string(f[1]));
      pos = end + 1;
    }
    const std::string data_path = dir + "/data." + std::string(files.name);
    part->data_fd = ::open(data_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (part->data_fd < 0) return NotFoundError("memory: cannot open " + data_path);
    thesaurus->parts_.push_back(std::move(part));
  }
  return thesaurus;
}

const Thesaurus* Thesaurus::Default() {
  static const Thesaurus* const kDefault = [] {
    const char* env = std::getenv("KVAULT_WORDNET_DIR");
    const std::string dir = env != nullptr && *env != '\0' ? env : "/usr/share/wordnet";
    Result<std::unique_ptr<Thesaurus>> opened = Open(dir);
    if (!opened.ok()) {
      KV_LOG(kWarning) << "memory: no WordNet in " << dir << " (install wordnet-base): "
                       << "search without query expansion; " << opened.status().message();
      return static_cast<const Thesaurus*>(nullptr);
    }
    return static_cast<const Thesaurus*>(opened->release());
  }();
  return kDefault;
}

std::vector<std::string> Thesaurus::Related(std::string_view word, size_t max_words) const {
  std::string key(word);
  std::replace(key.begin(), key.end(), ' ', '_');
  std::vector<std::string> synonyms, broader;
  auto add = [&](std::vector<std::string>& to, const std::string& w) {
    if (w == word || std::find(synonyms.begin(), synonyms.end(), w) != synonyms.end() ||
        std::find(broader.begin(), broader.end(), w) != broader.end()) {
      return;
    }
    to.push_back(w);
  };
  for (const auto& part : parts_) {
    const std::string_view line = part->FindBase(key);
    if (line.empty()) continue;
    const std::vector<std::string_view> f = Fields(line);
    if (f.size() < 4) continue;
    const std::string base = Lemma(f[0]);
    add(synonyms, base);  // "bought" -> "buy"
    const size_t n_synsets = std::strtoul(std::string(f[2]).c_str(), nullptr, 10);
    const size_t n_pointers = std::strtoul(std::string(f[3]).c_str(), nullptr, 10);
    const size_t first = 4 + n_pointers + 2;  // after sense_cnt and tagsense_cnt
    for (size_t s = 0; s < std::min(n_synsets, kSynonymSenses) && first + s < f.size(); ++s) {
      const int64_t offset = std::strtoll(std::string(f[first + s]).c_str(), nullptr, 10);
      const SynsetLine synset = ParseSynset(part->Synset(offset));
      for (const std::string& w : synset.words) add(synonyms, w);
      if (s > 0) continue;  // broader and narrower words of the most frequent sense only
      for (int64_t h : synset.hypernyms) {
        for (const std::string& w : ParseSynset(part->Synset(h)).words) add(broader, w);
      }
      for (size_t h = 0; h < std::min(synset.hyponyms.size(), kMaxHyponyms); ++h) {
        for (const std::string& w : ParseSynset(part->Synset(synset.hyponyms[h])).words) {
          add(broader, w);
        }
      }
    }
  }
  synonyms.insert(synonyms.end(), broader.begin(), broader.end());
  if (synonyms.size() > max_words) synonyms.resize(max_words);
  return synonyms;
}

bool Thesaurus::Knows(std::string_view word) const {
  std::string key(word);
  std::replace(key.begin(), key.end(), ' ', '_');
  return std::any_of(parts_.begin(), parts_.end(),
                     [&](const auto& part) { return !part->FindBase(key).empty(); });
}

}  // namespace kvault::memory
