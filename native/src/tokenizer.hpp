// The bundle's tokenizer.json, encoded exactly as Hugging Face `tokenizers` encodes it:
// WordPiece with BertNormalizer + BertPreTokenizer (BERT / MiniLM / mpnet vocabularies) and
// byte-level BPE (GPT-2 style, e.g. SmolLM2). Added tokens are matched in the raw text first.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "json.hpp"

namespace edgedistill {

struct Encoding {
  std::vector<int64_t> ids, type_ids, attention_mask;
};

class Tokenizer {
 public:
  // Throws std::runtime_error naming what in tokenizer.json is not supported.
  explicit Tokenizer(const std::string& tokenizer_json);

  // text: UTF-8 bytes (invalid UTF-8 throws "invalid UTF-8 at byte N"). max_length 0 = no truncation.
  Encoding encode(const std::string& text, bool add_special_tokens, size_t max_length) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;
  int64_t token_to_id(const std::string& token) const;  // -1 when absent
  const std::string& model_type() const { return model_type_; }

 private:
  struct Added {
    std::u32string content;
    int64_t id;
    bool special;
  };
  struct Special {
    bool is_sequence;
    std::vector<int64_t> ids;
    int64_t type_id;
  };
  std::string model_type_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<Added> added_;  // longest first
  std::vector<Special> template_single_;
  // WordPiece
  bool clean_text_ = true, chinese_ = true, strip_accents_ = true, lowercase_ = true;
  bool has_normalizer_ = false;
  std::string prefix_ = "##";
  int64_t unk_id_ = -1;
  size_t max_chars_ = 100;
  // BPE
  std::unordered_map<std::string, int> merge_rank_;
  bool digits_individual_ = false, byte_level_ = false, add_prefix_space_ = false;
  std::string byte_to_char_[256];
  std::unordered_map<std::string, unsigned char> char_to_byte_;

  void wordpiece(const std::u32string& piece, std::vector<int64_t>& out) const;
  void wordpiece_word(const std::u32string& word, std::vector<int64_t>& out) const;
  void bpe(const std::u32string& piece, std::vector<int64_t>& out) const;
  void bpe_word(const std::string& mapped, std::vector<int64_t>& out) const;
  void load_post_processor(const Json* pp);
};

}  // namespace edgedistill
