#include "report/scores_json.h"

#include "eval/evaluate.h"

namespace seqgan::report {

nlohmann::json tokenizer_scores_json(const TokenizerScores& s) {
  nlohmann::json j{{"psnr_db", s.psnr},
                   {"codebook_usage", s.usage},
                   {"codes_used", s.codes_used},
                   {"codebook_size", s.histogram.size(0)},
                   {"perplexity", s.perplexity}};
  if (s.rfid != -1) j["rfid"] = s.rfid;
  return j;
}

}  // namespace seqgan::report
