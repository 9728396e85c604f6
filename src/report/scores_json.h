// Scores as the result files hold them: DIR/metrics.json of a demo, RUN/result.json of an
// experiment, and `seqgan evaluate --json`.
#pragma once

#include <nlohmann/json.hpp>

namespace seqgan {
struct TokenizerScores;
}  // namespace seqgan

namespace seqgan::report {

// A tokenizer's scores under the keys every result file shares: psnr_db, codebook_usage,
// codes_used, codebook_size and perplexity, and rfid unless no network measured it (-1).
nlohmann::json tokenizer_scores_json(const TokenizerScores& s);

}  // namespace seqgan::report
