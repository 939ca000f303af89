// edgedistill-tokenize TOKENIZER_JSON [--no-special] [--max-length N]
// stdin: one hex-encoded UTF-8 text per line (hex so any byte, newline included, survives);
// stdout: per text one line of space-separated ids (then '|' and the type ids), or "error: ..." for that text.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "bundle.hpp"
#include "tokenizer.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "error: usage: edgedistill-tokenize TOKENIZER_JSON [--no-special] [--max-length N]\n");
    return 2;
  }
  bool special = true;
  size_t max_length = 0;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--no-special") special = false;
    else if (a == "--max-length" && i + 1 < argc) max_length = std::strtoul(argv[++i], nullptr, 10);
    else { std::fprintf(stderr, "error: unknown option %s\n", a.c_str()); return 2; }
  }
  std::string json;
  if (!edgedistill::read_file(argv[1], json)) { std::fprintf(stderr, "error: %s: cannot be read\n", argv[1]); return 2; }
  try {
    edgedistill::Tokenizer tok(json);
    std::string line, out;
    while (std::getline(std::cin, line)) {
      std::string text;
      for (size_t k = 0; k + 1 < line.size(); k += 2) text += static_cast<char>(std::strtol(line.substr(k, 2).c_str(), nullptr, 16));
      out.clear();
      try {
        auto e = tok.encode(text, special, max_length);
        for (size_t k = 0; k < e.ids.size(); ++k) out += (k ? " " : "") + std::to_string(e.ids[k]);
        out += "|";
        for (size_t k = 0; k < e.type_ids.size(); ++k) out += (k ? " " : "") + std::to_string(e.type_ids[k]);
      } catch (const std::exception& ex) {
        out = std::string("error: ") + ex.what();
      }
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fputc('\n', stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
