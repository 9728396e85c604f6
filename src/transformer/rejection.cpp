#include "transformer/rejection.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "seqgan/error.h"

namespace seqgan {

std::vector<int64_t> best_scored(const at::Tensor& scores, const std::vector<int64_t>& candidates, int64_t count) {
  const auto s = scores.to(at::kDouble).contiguous();
  const double* p = s.data_ptr<double>();
  std::vector<int64_t> order = candidates;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
  order.resize(static_cast<size_t>(std::min<int64_t>(count, static_cast<int64_t>(order.size()))));
  return order;
}

RejectionResult rejection_sample(const std::vector<int64_t>& classes, const RejectionOptions& o, const DrawFn& draw,
                                 const ScoreFn& score) {
  SEQGAN_CHECK_HINT(o.fraction > 0 && o.fraction <= 1, "set sample.accept_fraction in (0, 1]",
                    "acceptance fraction ", o.fraction, " is outside (0, 1]");
  SEQGAN_CHECK_HINT(o.threshold >= 0 && o.threshold <= 1, "set sample.accept_threshold in [0, 1]",
                    "acceptance threshold ", o.threshold, " is outside [0, 1]");
  SEQGAN_CHECK_HINT(!(o.fraction < 1 && o.threshold > 0), "set one of sample.accept_fraction and sample.accept_threshold",
                    "rejection sampling takes a fraction or a threshold, not both");
  SEQGAN_CHECK(o.max_draws >= 1, "max_draws must be at least 1, got ", o.max_draws);
  // The requested count of each class, in order of first appearance.
  std::vector<int64_t> order;
  std::map<int64_t, int64_t> wanted;
  for (const int64_t c : classes)
    if (wanted[c]++ == 0) order.push_back(c);

  RejectionResult r;
  std::vector<at::Tensor> codes, scores;  // everything drawn, in draw order
  std::vector<int64_t> drawn_class;
  int64_t total = 0;
  auto draw_round = [&](const std::vector<int64_t>& ids) {
    if (ids.empty()) return;
    const auto c = draw(ids);
    SEQGAN_CHECK(c.size(0) == static_cast<int64_t>(ids.size()), "the sampler returned ", c.size(0), " samples for ",
                 ids.size(), " classes");
    const auto s = score(c, ids).to(at::kDouble).reshape({-1});
    SEQGAN_CHECK(s.numel() == c.size(0), "the classifier returned ", s.numel(), " scores for ", c.size(0), " samples");
    codes.push_back(c);
    scores.push_back(s);
    drawn_class.insert(drawn_class.end(), ids.begin(), ids.end());
    total += c.size(0);
  };

  std::map<int64_t, std::vector<int64_t>> kept;
  if (o.threshold > 0) {
    std::map<int64_t, std::vector<int64_t>> passed;
    std::map<int64_t, int64_t> drawn_of;
    for (;;) {
      std::vector<int64_t> ids;
      for (const int64_t c : order) {
        const int64_t n = wanted[c];
        if (static_cast<int64_t>(passed[c].size()) < n && drawn_of[c] < o.max_draws * n) {
          ids.insert(ids.end(), static_cast<size_t>(n), c);
          drawn_of[c] += n;
        }
      }
      if (ids.empty()) break;
      const int64_t first = total;
      draw_round(ids);
      const double* p = scores.back().data_ptr<double>();
      for (int64_t i = 0; i < static_cast<int64_t>(ids.size()); ++i)
        if (p[i] >= o.threshold && static_cast<int64_t>(passed[ids[i]].size()) < wanted[ids[i]])
          passed[ids[i]].push_back(first + i);
    }
    const auto all = at::cat(scores);
    std::vector<bool> taken(static_cast<size_t>(total), false);
    for (const auto& [c, k] : passed)
      for (const int64_t i : k) taken[static_cast<size_t>(i)] = true;
    for (const int64_t c : order) {
      auto& k = passed[c];
      r.accepted += static_cast<int64_t>(k.size());
      const int64_t missing = wanted[c] - static_cast<int64_t>(k.size());
      if (missing > 0) {
        std::vector<int64_t> rest;
        for (int64_t i = 0; i < total; ++i)
          if (drawn_class[i] == c && !taken[static_cast<size_t>(i)]) rest.push_back(i);
        const auto fill = best_scored(all, rest, missing);
        k.insert(k.end(), fill.begin(), fill.end());
        r.filled += static_cast<int64_t>(fill.size());
      }
      kept[c] = best_scored(all, k, wanted[c]);
    }
  } else {
    std::vector<int64_t> ids;
    for (const int64_t c : order) {
      const auto n = static_cast<int64_t>(std::ceil(static_cast<double>(wanted[c]) / o.fraction - 1e-9));
      ids.insert(ids.end(), static_cast<size_t>(n), c);
    }
    draw_round(ids);
    const auto all = at::cat(scores);
    for (const int64_t c : order) {
      std::vector<int64_t> mine;
      for (int64_t i = 0; i < total; ++i)
        if (drawn_class[i] == c) mine.push_back(i);
      kept[c] = best_scored(all, mine, wanted[c]);
      r.accepted += static_cast<int64_t>(kept[c].size());
    }
  }
  r.drawn = total;
  const auto all_codes = at::cat(codes), all_scores = at::cat(scores);
  // Back in the order of the request: each class's kept samples, best first, where it asked.
  std::map<int64_t, size_t> next;
  std::vector<int64_t> pick;
  for (const int64_t c : classes) pick.push_back(kept[c].at(next[c]++));
  r.drawn_index = at::tensor(pick, at::kLong);
  r.codes = all_codes.index_select(0, r.drawn_index.to(all_codes.device()));
  r.scores = all_scores.index_select(0, r.drawn_index);
  return r;
}

}  // namespace seqgan
