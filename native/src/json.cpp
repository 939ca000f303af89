#include "json.hpp"
#include "unicode.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace edgedistill {
namespace {

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Json document() {
    skip_ws();
    Json v = value(0);
    skip_ws();
    if (i_ != s_.size()) fail("extra data after the JSON value");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(what + " at byte " + std::to_string(i_));
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool lit(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) == 0) { i_ += n; return true; }
    return false;
  }
  Json value(int depth) {
    if (depth > 512) fail("nesting too deep");
    if (i_ >= s_.size()) fail("unexpected end of data");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      v.type = Json::Type::Object;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
      for (;;) {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key");
        std::string key = string();
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
        ++i_;
        skip_ws();
        v.obj.emplace_back(std::move(key), value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.type = Json::Type::Array;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
      for (;;) {
        skip_ws();
        v.arr.push_back(value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') { v.type = Json::Type::String; v.str = string(); return v; }
    if (lit("true")) { v.type = Json::Type::Bool; v.b = true; return v; }
    if (lit("false")) { v.type = Json::Type::Bool; return v; }
    if (lit("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    fail("unexpected character");
  }
  Json number() {
    size_t start = i_;
    if (s_[i_] == '-') ++i_;
    auto digits = [&] {
      size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (d == i_) fail("bad number");
    };
    if (i_ < s_.size() && s_[i_] == '0') ++i_; else digits();
    bool is_int = true;
    if (i_ < s_.size() && s_[i_] == '.') { ++i_; digits(); is_int = false; }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      digits();
      is_int = false;
    }
    Json v;
    v.type = Json::Type::Number;
    std::string text = s_.substr(start, i_ - start);
    v.num = std::strtod(text.c_str(), nullptr);
    if (is_int) {
      errno = 0;
      long long n = std::strtoll(text.c_str(), nullptr, 10);
      v.is_int = errno == 0;
      v.integer = n;
    }
    return v;
  }
  uint32_t hex4() {
    if (i_ + 4 > s_.size()) fail("bad \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') { out += c; continue; }
      if (i_ >= s_.size()) fail("unterminated string");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.compare(i_, 2, "\\u") == 0) {
            size_t save = i_;
            i_ += 2;
            uint32_t lo = hex4();
            if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else i_ = save;
          }
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // a lone surrogate has no UTF-8 form
          unicode::append_utf8(out, static_cast<char32_t>(cp));
          break;
        }
        default: fail("bad escape");
      }
    }
  }
};

void dump_to(const Json& v, std::string& out) {
  switch (v.type) {
    case Json::Type::Null: out += "null"; break;
    case Json::Type::Bool: out += v.b ? "true" : "false"; break;
    case Json::Type::Number:
      out += v.is_int ? std::to_string(v.integer) : std::to_string(v.num);
      break;
    case Json::Type::String: out += '"' + v.str + '"'; break;
    case Json::Type::Array:
      out += '[';
      for (size_t k = 0; k < v.arr.size(); ++k) { if (k) out += ", "; dump_to(v.arr[k], out); }
      out += ']';
      break;
    case Json::Type::Object:
      out += '{';
      for (size_t k = 0; k < v.obj.size(); ++k) {
        if (k) out += ", ";
        out += '"' + v.obj[k].first + "\": ";
        dump_to(v.obj[k].second, out);
      }
      out += '}';
      break;
  }
}

}  // namespace

Json Json::parse(const std::string& text) { return Parser(text).document(); }

const Json* Json::get(const std::string& key) const {
  if (type != Type::Object) return nullptr;
  // JSON objects with a repeated key: the last one wins, as in Python's json module
  for (auto it = obj.rbegin(); it != obj.rend(); ++it)
    if (it->first == key) return &it->second;
  return nullptr;
}

std::string Json::get_string(const std::string& key, const std::string& fallback) const {
  const Json* v = get(key);
  return v && v->is_string() ? v->str : fallback;
}

std::string Json::dump() const {
  std::string out;
  dump_to(*this, out);
  return out;
}

}  // namespace edgedistill
