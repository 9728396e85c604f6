// Rejection sampling of class-conditional samples (as VQGAN and ViT-VQGAN sampled with a
// ResNet's class probability): more samples are drawn than asked, a classifier scores each with
// the probability of the class it was drawn for, and the best are kept.
//
// Two rules:
//   fraction f: per class, ceil(n / f) draws, the n best-scored kept (acceptance rate n / draws);
//   threshold p: per class, rounds of n draws until n images score >= p or max_draws x n were
//     drawn; a class still short keeps its best-scored rejects to reach n (reported).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace seqgan {

struct RejectionOptions {
  double fraction = 1.0;   // (0, 1]; 1: off
  double threshold = 0.0;  // [0, 1]; 0: off
  int64_t max_draws = 8;   // threshold rule: at most this many times the count per class
  bool active() const { return fraction < 1.0 || threshold > 0.0; }
};

struct RejectionResult {
  at::Tensor codes;   // [N, ...] the kept samples, in the order of the requested classes
  at::Tensor scores;  // [N] their scores
  at::Tensor drawn_index;  // [N] int64: where each kept sample is among all draws, in draw order
  int64_t drawn = 0;     // samples drawn
  int64_t accepted = 0;  // samples the rule accepted (fraction: N; threshold: those >= p, at most N)
  int64_t filled = 0;    // threshold rule: rejects kept to reach the count
  double acceptance_rate() const { return drawn > 0 ? static_cast<double>(accepted) / static_cast<double>(drawn) : 0.0; }
};

// The indices of the `count` highest scores among `candidates` (indices into scores [N]),
// highest first; ties keep the earlier index.
std::vector<int64_t> best_scored(const at::Tensor& scores, const std::vector<int64_t>& candidates, int64_t count);

// `classes`: the class of every requested image (equal classes adjacent, a grid row each).
// `draw(classes)` samples codes [n, ...] for n class ids; `score(codes, classes)` returns the
// classifier's probability of each sample's class, [n] float64.
using DrawFn = std::function<at::Tensor(const std::vector<int64_t>&)>;
using ScoreFn = std::function<at::Tensor(const at::Tensor&, const std::vector<int64_t>&)>;
RejectionResult rejection_sample(const std::vector<int64_t>& classes, const RejectionOptions& options, const DrawFn& draw,
                                 const ScoreFn& score);

}  // namespace seqgan
