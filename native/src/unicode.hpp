// Unicode facts for the tokenizers (tables generated from Python's unicodedata) and strict UTF-8.
#pragma once

#include <string>
#include <vector>

namespace edgedistill {
namespace unicode {

bool is_other(char32_t c);            // general category C* (control, format, unassigned, private use)
bool is_punctuation(char32_t c);      // P*
bool is_mark_nonspacing(char32_t c);  // Mn
bool is_letter(char32_t c);           // L*
bool is_number(char32_t c);           // N*
bool is_whitespace(char32_t c);       // the White_Space property (Rust's char::is_whitespace)
// Canonical decomposition (NFD) and per-character lowercase, appended to out.
void nfd(char32_t c, std::u32string& out);
void lower(char32_t c, std::u32string& out);

// Strict decoding: throws std::runtime_error("invalid UTF-8 at byte N") on any malformed sequence,
// overlong form or surrogate, as Python's bytes.decode("utf-8") refuses them.
std::u32string decode_utf8(const std::string& s);
std::string encode_utf8(const std::u32string& s);
void append_utf8(std::string& out, char32_t c);

}  // namespace unicode
}  // namespace edgedistill
