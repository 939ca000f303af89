#include "unicode.hpp"

#include <algorithm>
#include <stdexcept>

namespace edgedistill {
namespace unicode {
namespace {

struct Range {
  char32_t lo, hi;
};
struct MapEntry {
  char32_t cp;
  unsigned offset, length;
};

#include "unicode_tables.inc"

template <size_t N>
bool in(const Range (&table)[N], char32_t c) {
  const Range* end = table + N;
  const Range* it = std::upper_bound(table, end, c, [](char32_t v, const Range& r) { return v < r.lo; });
  return it != table && c <= (it - 1)->hi;
}

template <size_t N>
void map_into(const MapEntry (&table)[N], const char32_t* data, char32_t c, std::u32string& out) {
  const MapEntry* end = table + N;
  const MapEntry* it = std::lower_bound(table, end, c, [](const MapEntry& e, char32_t v) { return e.cp < v; });
  if (it != end && it->cp == c) out.append(data + it->offset, it->length);
  else out.push_back(c);
}

}  // namespace

bool is_other(char32_t c) { return c > 0x10FFFF || in(kOther, c); }
bool is_punctuation(char32_t c) { return in(kPunct, c); }
bool is_mark_nonspacing(char32_t c) { return in(kMarkNonspacing, c); }
bool is_letter(char32_t c) { return in(kLetter, c); }
bool is_number(char32_t c) { return in(kNumber, c); }

bool is_whitespace(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

void nfd(char32_t c, std::u32string& out) { map_into(kNfd, kNfd_data, c, out); }
void lower(char32_t c, std::u32string& out) { map_into(kLower, kLower_data, c, out); }

std::u32string decode_utf8(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  auto bad = [&](size_t at) {
    throw std::runtime_error("invalid UTF-8 at byte " + std::to_string(at));
  };
  while (i < n) {
    unsigned char b = p[i];
    if (b < 0x80) { out.push_back(b); ++i; continue; }
    int len;
    char32_t cp, min;
    if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; min = 0x80; }
    else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; min = 0x800; }
    else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; min = 0x10000; }
    else bad(i);
    if (i + len > n) bad(i);
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) bad(i);
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) bad(i);
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) { out += char(cp); }
  else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
  }
}

std::string encode_utf8(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

}  // namespace unicode
}  // namespace edgedistill

