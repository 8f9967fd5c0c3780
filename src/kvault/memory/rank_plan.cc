#include "kvault/memory/rank_plan.h"

#include <algorithm>
#include <cmath>

#include "kvault/base/status_macros.h"

namespace kvault::memory {
namespace {

std::string Quoted(const std::string& text) { return '"' + text + '"'; }

struct Counted {
  std::string text;
  double weight = 0;
  int64_t rows = 0;  // document frequency
};

// `phrases` merged by text, with their frequencies; those no row holds are left out.
Result<std::vector<Counted>> Count(std::span<const RankedPhrase> phrases,
                                   const PhraseFrequency& frequency) {
  std::vector<Counted> counted;
  for (const RankedPhrase& phrase : phrases) {
    auto same = std::find_if(counted.begin(), counted.end(),
                             [&](const Counted& c) { return c.text == phrase.text; });
    if (same != counted.end()) {
      same->weight += phrase.weight;
      continue;
    }
    counted.push_back({phrase.text, phrase.weight, 0});
  }
  for (Counted& c : counted) {
    KV_ASSIGN_OR_RETURN(c.rows, frequency(Quoted(c.text)));
  }
  std::erase_if(counted, [](const Counted& c) { return c.rows <= 0; });
  return counted;
}

double Idf(int64_t n_rows, int64_t rows) {
  const double n = static_cast<double>(std::max(n_rows, rows));
  const double df = static_cast<double>(rows);
  return std::max(1e-6, std::log((n - df + 0.5) / (df + 0.5)));
}

// "p1 OR p2 ..." of `phrases`, appending their scoring weights.
std::string ScoredOr(const std::vector<Counted>& phrases, int64_t n_rows,
                     std::vector<double>* weights) {
  std::string expression;
  for (const Counted& c : phrases) {
    expression += (expression.empty() ? "" : " OR ") + Quoted(c.text);
    weights->push_back(c.weight * Idf(n_rows, c.rows));
  }
  return expression;
}

// The selecting clauses: selective phrases alone, pairs of common ones (see the header);
// *rows: the sum of the rows each selects.
Result<std::vector<std::string>> Selectors(const std::vector<Counted>& phrases,
                                           const RankPlanParams& params,
                                           const PhraseFrequency& frequency, size_t* n_phrases,
                                           int64_t* rows) {
  const auto n = static_cast<double>(params.n_rows);
  const auto selective =
      std::max<double>(static_cast<double>(params.min_selective), params.selective_share * n);
  std::vector<std::string> clauses;
  std::vector<const Counted*> common;
  for (const Counted& c : phrases) {
    if (static_cast<double>(c.rows) <= selective) {
      clauses.push_back(Quoted(c.text));
      ++*n_phrases;
      *rows += c.rows;
    } else if (c.weight >= 1 && static_cast<double>(c.rows) <= params.common_share * n) {
      common.push_back(&c);  // the thesaurus's words do not pair: they only add to a score
    }
  }
  std::sort(common.begin(), common.end(),
            [](const Counted* a, const Counted* b) { return a->rows < b->rows; });
  size_t pairs = 0;
  for (size_t i = 0; i < common.size(); ++i) {
    for (size_t j = i + 1; j < common.size() && pairs < params.max_pairs; ++j, ++pairs) {
      const std::string pair = Quoted(common[i]->text) + " AND " + Quoted(common[j]->text);
      KV_ASSIGN_OR_RETURN(const int64_t both, frequency(pair));
      if (both == 0) continue;  // never in one chunk: selects nothing
      clauses.push_back("(" + pair + ")");
      *n_phrases += 2;
      *rows += both;
    }
  }
  if (clauses.empty()) {
    const auto rarest =
        std::min_element(phrases.begin(), phrases.end(),
                         [](const Counted& a, const Counted& b) { return a.rows < b.rows; });
    clauses.push_back(Quoted(rarest->text));
    *n_phrases = 1;
    *rows = rarest->rows;
  }
  return clauses;
}

std::string Joined(const std::vector<std::string>& clauses) {
  std::string out;
  for (const std::string& clause : clauses) out += (out.empty() ? "" : " OR ") + clause;
  return out;
}

}  // namespace

Result<RankPlan> PlanRanking(std::span<const RankedPhrase> scored,
                             std::span<const RankedPhrase> required,
                             const PhraseFrequency& frequency, const RankPlanParams& params) {
  KV_ASSIGN_OR_RETURN(const std::vector<Counted> phrases, Count(scored, frequency));
  KV_ASSIGN_OR_RETURN(const std::vector<Counted> names, Count(required, frequency));
  RankPlan plan;
  if (phrases.empty() || (!required.empty() && names.empty())) return plan;
  if (!required.empty()) {
    for (const Counted& name : names) plan.selected_rows += name.rows;
    const std::string selecting = ScoredOr(names, params.n_rows, &plan.weights);
    plan.match =
        "(" + selecting + ") AND (" + ScoredOr(phrases, params.n_rows, &plan.weights) + ")";
    return plan;
  }
  size_t n_selecting = 0;
  KV_ASSIGN_OR_RETURN(const std::vector<std::string> clauses,
                      Selectors(phrases, params, frequency, &n_selecting, &plan.selected_rows));
  const std::string all = ScoredOr(phrases, params.n_rows, &plan.weights);
  if (clauses.size() == phrases.size() && n_selecting == phrases.size()) {
    plan.match = all;  // every phrase selects: the plain OR
    return plan;
  }
  plan.weights.insert(plan.weights.begin(), n_selecting, 0.0);
  plan.n_selecting = n_selecting;
  plan.match = "(" + Joined(clauses) + ") AND (" + all + ")";
  return plan;
}

}  // namespace kvault::memory
