#include "tokenizer.hpp"

#include <algorithm>
#include <climits>
#include <stdexcept>

#include "unicode.hpp"

namespace edgedistill {
namespace {

using unicode::append_utf8;

[[noreturn]] void unsupported(const std::string& what) {
  throw std::runtime_error("tokenizer.json: " + what + " is not supported by the native tokenizer");
}

bool is_chinese(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool is_bert_punct(char32_t c) {
  bool ascii = c < 0x80 && ((c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                            (c >= 0x7B && c <= 0x7E));
  return ascii || unicode::is_punctuation(c);
}

bool boolean(const Json& j, const char* key, bool fallback) {
  const Json* v = j.get(key);
  return v && v->is_bool() ? v->b : fallback;
}

}  // namespace

Tokenizer::Tokenizer(const std::string& text) {
  Json root;
  try {
    root = Json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("tokenizer.json: unreadable JSON (") + e.what() + ")");
  }
  const Json* model = root.get("model");
  if (!model || !model->is_object()) unsupported("a tokenizer without a 'model'");
  model_type_ = model->get_string("type");
  const Json* vocab = model->get("vocab");
  if (!vocab || !vocab->is_object()) unsupported("model type '" + model_type_ + "' without a vocab object");
  vocab_.reserve(vocab->obj.size() * 2);
  for (const auto& kv : vocab->obj) {
    if (!kv.second.is_integer() || kv.second.integer < 0) unsupported("a vocab id that is not a count");
    vocab_[kv.first] = kv.second.integer;
  }
  if (const Json* added = root.get("added_tokens"); added && added->is_array()) {
    for (const Json& a : added->arr) {
      const Json* id = a.get("id");
      if (!id || !id->is_integer()) unsupported("an added token without an integer id");
      if (boolean(a, "normalized", false) && !boolean(a, "special", false))
        unsupported("added token '" + a.get_string("content") + "' matched after normalization");
      if (boolean(a, "lstrip", false) || boolean(a, "rstrip", false) || boolean(a, "single_word", false))
        unsupported("added token '" + a.get_string("content") + "' with lstrip/rstrip/single_word");
      added_.push_back({unicode::decode_utf8(a.get_string("content")), id->integer, boolean(a, "special", false)});
      vocab_[a.get_string("content")] = id->integer;
    }
  }
  // Leftmost-longest matching: at one position the longest token wins.
  std::stable_sort(added_.begin(), added_.end(),
                   [](const Added& x, const Added& y) { return x.content.size() > y.content.size(); });
  int64_t max_id = -1;
  for (const auto& kv : vocab_) max_id = std::max(max_id, kv.second);
  id_to_token_.assign(static_cast<size_t>(max_id + 1), "");
  for (const auto& kv : vocab_) id_to_token_[static_cast<size_t>(kv.second)] = kv.first;

  const Json* norm = root.get("normalizer");
  const Json* pre = root.get("pre_tokenizer");
  if (model_type_ == "WordPiece") {
    if (!norm || norm->get_string("type") != "BertNormalizer")
      unsupported("WordPiece without a BertNormalizer");
    if (!pre || pre->get_string("type") != "BertPreTokenizer") unsupported("WordPiece without a BertPreTokenizer");
    has_normalizer_ = true;
    clean_text_ = boolean(*norm, "clean_text", true);
    chinese_ = boolean(*norm, "handle_chinese_chars", true);
    lowercase_ = boolean(*norm, "lowercase", true);
    const Json* sa = norm->get("strip_accents");
    strip_accents_ = sa && sa->is_bool() ? sa->b : lowercase_;
    prefix_ = model->get_string("continuing_subword_prefix", "##");
    if (const Json* m = model->get("max_input_chars_per_word"); m && m->is_integer())
      max_chars_ = static_cast<size_t>(m->integer);
    unk_id_ = token_to_id(model->get_string("unk_token", "[UNK]"));
    if (unk_id_ < 0) unsupported("a WordPiece unk_token missing from the vocab");
  } else if (model_type_ == "BPE") {
    if (norm && !norm->is_null()) unsupported("a BPE normalizer ('" + norm->get_string("type") + "')");
    std::vector<const Json*> pres;
    if (pre && pre->get_string("type") == "Sequence") {
      if (const Json* list = pre->get("pretokenizers"))
        for (const Json& p : list->arr) pres.push_back(&p);
    } else if (pre && !pre->is_null()) {
      pres.push_back(pre);
    }
    for (size_t k = 0; k < pres.size(); ++k) {
      std::string t = pres[k]->get_string("type");
      if (t == "Digits" && k + 1 < pres.size() && boolean(*pres[k], "individual_digits", false)) {
        digits_individual_ = true;
      } else if (t == "ByteLevel" && k + 1 == pres.size() && boolean(*pres[k], "use_regex", true)) {
        byte_level_ = true;
        add_prefix_space_ = boolean(*pres[k], "add_prefix_space", false);
      } else {
        unsupported("BPE pre-tokenizer '" + t + "'");
      }
    }
    if (!byte_level_) unsupported("BPE without a ByteLevel pre-tokenizer");
    if (boolean(*model, "byte_fallback", false)) unsupported("BPE byte_fallback");
    if (boolean(*model, "ignore_merges", false)) unsupported("BPE ignore_merges");
    if (!model->get_string("continuing_subword_prefix").empty() || !model->get_string("end_of_word_suffix").empty())
      unsupported("BPE subword prefixes/suffixes");
    const Json* merges = model->get("merges");
    if (!merges || !merges->is_array()) unsupported("BPE without merges");
    int rank = 0;
    for (const Json& m : merges->arr) {
      std::string a, b;
      if (m.is_string()) {
        size_t sp = m.str.find(' ', 1);
        if (sp == std::string::npos) unsupported("merge '" + m.str + "'");
        a = m.str.substr(0, sp);
        b = m.str.substr(sp + 1);
      } else if (m.is_array() && m.arr.size() == 2 && m.arr[0].is_string() && m.arr[1].is_string()) {
        a = m.arr[0].str;
        b = m.arr[1].str;
      } else {
        unsupported("a merge that is neither \"a b\" nor [a, b]");
      }
      merge_rank_.emplace(a + '\x01' + b, rank++);
    }
    // GPT-2's reversible byte -> printable character table
    int n = 0;
    for (int byte = 0; byte < 256; ++byte) {
      bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
      char32_t c = printable ? char32_t(byte) : char32_t(256 + n++);
      std::string s;
      append_utf8(s, c);
      byte_to_char_[byte] = s;
      char_to_byte_[s] = static_cast<unsigned char>(byte);
    }
  } else {
    unsupported("model type '" + model_type_ + "'");
  }
  load_post_processor(root.get("post_processor"));
}

void Tokenizer::load_post_processor(const Json* pp) {
  if (!pp || pp->is_null()) return;
  std::string t = pp->get_string("type");
  if (t == "Sequence") {
    if (const Json* list = pp->get("processors"))
      for (const Json& p : list->arr) load_post_processor(&p);
    return;
  }
  if (t == "ByteLevel") return;  // only moves offsets
  auto special_id = [&](const std::string& token) {
    int64_t id = token_to_id(token);
    if (id < 0) unsupported("post-processor token '" + token + "' missing from the vocab");
    return id;
  };
  if (t == "TemplateProcessing") {
    const Json* single = pp->get("single");
    const Json* specials = pp->get("special_tokens");
    if (!single || !single->is_array()) unsupported("a TemplateProcessing without 'single'");
    for (const Json& piece : single->arr) {
      if (const Json* s = piece.get("Sequence")) {
        const Json* tid = s->get("type_id");
        template_single_.push_back({true, {}, tid && tid->is_integer() ? tid->integer : 0});
      } else if (const Json* s = piece.get("SpecialToken")) {
        std::string name = s->get_string("id");
        std::vector<int64_t> ids;
        const Json* spec = specials ? specials->get(name) : nullptr;
        if (spec && spec->get("ids")) {
          for (const Json& i : spec->get("ids")->arr) ids.push_back(i.integer);
        } else {
          ids.push_back(special_id(name));
        }
        const Json* tid = s->get("type_id");
        template_single_.push_back({false, ids, tid && tid->is_integer() ? tid->integer : 0});
      } else {
        unsupported("a TemplateProcessing piece");
      }
    }
    return;
  }
  if (t == "BertProcessing" || t == "RobertaProcessing") {
    const Json* cls = pp->get("cls");
    const Json* sep = pp->get("sep");
    if (!cls || !sep || cls->arr.size() != 2 || sep->arr.size() != 2) unsupported(t + " without cls/sep");
    template_single_ = {{false, {cls->arr[1].integer}, 0}, {true, {}, 0}, {false, {sep->arr[1].integer}, 0}};
    return;
  }
  unsupported("post-processor '" + t + "'");
}

int64_t Tokenizer::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

Encoding Tokenizer::encode(const std::string& text, bool add_special_tokens, size_t max_length) const {
  std::u32string s = unicode::decode_utf8(text);
  std::vector<int64_t> ids;
  // Split around added tokens in the raw text (leftmost, then longest), encode the pieces between.
  size_t start = 0, i = 0;
  auto flush = [&](size_t end) {
    if (end > start) {
      std::u32string piece = s.substr(start, end - start);
      if (model_type_ == "WordPiece") wordpiece(piece, ids);
      else bpe(piece, ids);
    }
  };
  while (i < s.size()) {
    const Added* hit = nullptr;
    for (const Added& a : added_)
      if (!a.content.empty() && s.compare(i, a.content.size(), a.content) == 0) { hit = &a; break; }
    if (!hit) { ++i; continue; }
    flush(i);
    ids.push_back(hit->id);
    i += hit->content.size();
    start = i;
  }
  flush(s.size());

  size_t extra = 0;
  if (add_special_tokens)
    for (const Special& sp : template_single_) extra += sp.is_sequence ? 0 : sp.ids.size();
  if (max_length && ids.size() + extra > max_length) ids.resize(max_length > extra ? max_length - extra : 0);
  Encoding enc;
  if (add_special_tokens && !template_single_.empty()) {
    for (const Special& sp : template_single_) {
      const std::vector<int64_t>& part = sp.is_sequence ? ids : sp.ids;
      enc.ids.insert(enc.ids.end(), part.begin(), part.end());
      enc.type_ids.insert(enc.type_ids.end(), part.size(), sp.type_id);
    }
  } else {
    enc.ids = ids;
    enc.type_ids.assign(ids.size(), 0);
  }
  // HF truncates after the template too when the specials alone exceed max_length
  if (max_length && enc.ids.size() > max_length) {
    enc.ids.resize(max_length);
    enc.type_ids.resize(max_length);
  }
  enc.attention_mask.assign(enc.ids.size(), 1);
  return enc;
}

void Tokenizer::wordpiece(const std::u32string& raw, std::vector<int64_t>& out) const {
  // BertNormalizer: clean text, pad CJK characters, strip accents (NFD, drop Mn), lowercase
  std::u32string a;
  a.reserve(raw.size());
  for (char32_t c : raw) {
    if (clean_text_) {
      if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && unicode::is_other(c))) continue;
      if (unicode::is_whitespace(c)) c = ' ';
    }
    if (chinese_ && is_chinese(c)) {
      a.push_back(' ');
      a.push_back(c);
      a.push_back(' ');
    } else {
      a.push_back(c);
    }
  }
  if (strip_accents_) {
    std::u32string d;
    for (char32_t c : a) unicode::nfd(c, d);
    a.clear();
    for (char32_t c : d)
      if (!unicode::is_mark_nonspacing(c)) a.push_back(c);
  }
  if (lowercase_) {
    std::u32string l;
    for (char32_t c : a) unicode::lower(c, l);
    a.swap(l);
  }
  // BertPreTokenizer: whitespace separates words, each punctuation character is a word of its own
  std::u32string word;
  for (char32_t c : a) {
    if (unicode::is_whitespace(c)) {
      if (!word.empty()) wordpiece_word(word, out);
      word.clear();
    } else if (is_bert_punct(c)) {
      if (!word.empty()) wordpiece_word(word, out);
      word.assign(1, c);
      wordpiece_word(word, out);
      word.clear();
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) wordpiece_word(word, out);
}

void Tokenizer::wordpiece_word(const std::u32string& word, std::vector<int64_t>& out) const {
  if (word.size() > max_chars_) { out.push_back(unk_id_); return; }
  std::vector<int64_t> pieces;
  size_t start = 0;
  std::string sub;
  while (start < word.size()) {
    size_t end = word.size();
    int64_t found = -1;
    while (start < end) {
      sub = start > 0 ? prefix_ : std::string();
      for (size_t k = start; k < end; ++k) append_utf8(sub, word[k]);
      auto it = vocab_.find(sub);
      if (it != vocab_.end()) { found = it->second; break; }
      --end;
    }
    if (found < 0) { out.push_back(unk_id_); return; }
    pieces.push_back(found);
    start = end;
  }
  out.insert(out.end(), pieces.begin(), pieces.end());
}

void Tokenizer::bpe(const std::u32string& raw, std::vector<int64_t>& out) const {
  // Digits(individual_digits) splits every numeric character off; ByteLevel's GPT-2 regex then splits
  // each part: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  std::vector<std::u32string> parts;
  std::u32string text = raw;
  if (add_prefix_space_ && !text.empty() && text[0] != ' ') text.insert(text.begin(), U' ');
  if (digits_individual_) {
    std::u32string cur;
    for (char32_t c : text) {
      if (unicode::is_number(c)) {
        if (!cur.empty()) parts.push_back(cur);
        parts.emplace_back(1, c);
        cur.clear();
      } else {
        cur.push_back(c);
      }
    }
    if (!cur.empty()) parts.push_back(cur);
  } else {
    parts.push_back(text);
  }
  auto L = [](char32_t c) { return unicode::is_letter(c); };
  auto N = [](char32_t c) { return unicode::is_number(c); };
  auto S = [](char32_t c) { return unicode::is_whitespace(c); };
  for (const std::u32string& p : parts) {
    size_t n = p.size(), i = 0;
    while (i < n) {
      size_t j = i;
      char32_t c = p[i];
      if (c == '\'' && i + 1 < n) {
        char32_t d = p[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') j = i + 2;
        else if (i + 2 < n && ((d == 'r' && p[i + 2] == 'e') || (d == 'v' && p[i + 2] == 'e') ||
                               (d == 'l' && p[i + 2] == 'l')))
          j = i + 3;
      }
      if (j == i) {
        size_t k = (c == ' ' && i + 1 < n) ? i + 1 : i;
        char32_t e = p[k];
        if (L(e)) { j = k; while (j < n && L(p[j])) ++j; }
        else if (N(e)) { j = k; while (j < n && N(p[j])) ++j; }
        else if (!S(e) && !L(e) && !N(e)) { j = k; while (j < n && !S(p[j]) && !L(p[j]) && !N(p[j])) ++j; }
      }
      if (j == i) {  // whitespace
        size_t k = i;
        while (k < n && S(p[k])) ++k;
        if (k == n || k - i == 1) j = k;  // \s+ to the end, or a single one before a non-space
        else j = k - 1;                   // \s+(?!\S): leave the last space to the next word
      }
      std::string mapped;
      std::string bytes = unicode::encode_utf8(p.substr(i, j - i));
      for (unsigned char b : bytes) mapped += byte_to_char_[b];
      bpe_word(mapped, out);
      i = j;
    }
  }
}

void Tokenizer::bpe_word(const std::string& mapped, std::vector<int64_t>& out) const {
  std::vector<std::string> sym;
  std::u32string chars = unicode::decode_utf8(mapped);
  for (char32_t c : chars) { std::string s; append_utf8(s, c); sym.push_back(s); }
  while (sym.size() > 1) {
    int best = INT_MAX;
    size_t at = 0;
    for (size_t k = 0; k + 1 < sym.size(); ++k) {
      auto it = merge_rank_.find(sym[k] + '\x01' + sym[k + 1]);
      if (it != merge_rank_.end() && it->second < best) { best = it->second; at = k; }
    }
    if (best == INT_MAX) break;
    std::string a = sym[at], b = sym[at + 1];
    std::vector<std::string> next;
    for (size_t k = 0; k < sym.size();) {
      if (k + 1 < sym.size() && sym[k] == a && sym[k + 1] == b) { next.push_back(a + b); k += 2; }
      else next.push_back(sym[k++]);
    }
    sym.swap(next);
  }
  for (const std::string& s : sym) {
    int64_t id = token_to_id(s);
    if (id < 0) throw std::runtime_error("tokenizer.json: BPE symbol missing from the vocab");
    out.push_back(id);
  }
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string out;
  for (int64_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) continue;
    bool special = false;
    for (const Added& a : added_) special |= a.special && a.id == id;
    if (special && skip_special_tokens) continue;
    const std::string& tok = id_to_token_[static_cast<size_t>(id)];
    if (model_type_ == "BPE" && !special) {
      for (char32_t c : unicode::decode_utf8(tok)) {
        std::string s;
        append_utf8(s, c);
        auto it = char_to_byte_.find(s);
        if (it != char_to_byte_.end()) out += static_cast<char>(it->second);
        else out += s;
      }
    } else if (model_type_ == "WordPiece" && tok.compare(0, prefix_.size(), prefix_) == 0) {
      out += tok.substr(prefix_.size());
    } else {
      if (!out.empty() && model_type_ == "WordPiece") out += ' ';
      out += tok;
    }
  }
  return out;
}

}  // namespace edgedistill
