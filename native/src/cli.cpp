// edgedistill-native: the C API from the command line; one JSON object per text on stdout.
//   edgedistill-native verify BUNDLE [--expect-id ID]
//   edgedistill-native embed|predict|tokenize BUNDLE [--expect-id ID] [--exit-threshold P] [--no-truncate]
//                      [--stdin] [TEXT ...]      (--stdin: one text per line; --hex: texts are hex-encoded bytes)
//   edgedistill-native generate BUNDLE [--ids 1,2,3 | PROMPT] [--max-new-tokens N] [--temperature T]
//                      [--top-k K] [--top-p P] [--seed S] [--repeat N]
// Any command: --threads N sizes the ExecuTorch thread pool; --timing writes load/run times, CPU times and the
// process's peak RSS as one JSON line on stderr (the bench's native runner reads it).
// Errors: one line on stderr, exit status 2.
#include <sys/resource.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "edgedistill.h"

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  std::exit(2);
}

std::string json_str(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); out += b; }
    else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string from_hex(const std::string& h) {
  std::string out;
  for (size_t k = 0; k + 1 < h.size(); k += 2) out += static_cast<char>(std::strtol(h.substr(k, 2).c_str(), nullptr, 16));
  return out;
}

std::string floats(const float* v, size_t n) {
  std::string out = "[";
  char b[32];
  for (size_t k = 0; k < n; ++k) { std::snprintf(b, sizeof b, "%s%.9g", k ? ", " : "", v[k]); out += b; }
  return out + "]";
}

double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

double status_mb(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  double kb = -1;
  size_t n = std::strlen(key);
  while (f && std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') kb = std::atof(line + n + 1);
  if (f) std::fclose(f);
  return kb < 0 ? -1 : kb / 1024.0;
}

// VmHWM, not getrusage: ru_maxrss survives execve, so a child of a large parent would report the parent's peak.
double peak_rss_mb() {
  double mb = status_mb("VmHWM");
  if (mb > 0) return mb;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::string list(const std::vector<double>& v) {
  std::string out = "[";
  for (size_t j = 0; j < v.size(); ++j) out += (j ? ", " : "") + std::to_string(v[j]);
  return out + "]";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) die("usage: edgedistill-native verify|embed|predict|tokenize|generate BUNDLE [options] [TEXT ...]");
  std::string cmd = argv[1], path = argv[2], expect, ids_arg;
  std::vector<std::string> texts;
  bool from_stdin = false, hex = false, truncate = true, timing = false;
  float threshold = -1;
  int repeat = 1, threads = 0;
  ed_sampling s{64, 0.0f, 0, 1.0f, 0};
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--expect-id") expect = value();
    else if (a == "--exit-threshold") threshold = std::stof(value());
    else if (a == "--no-truncate") truncate = false;
    else if (a == "--stdin") from_stdin = true;
    else if (a == "--hex") hex = true;
    else if (a == "--timing") timing = true;
    else if (a == "--repeat") repeat = std::atoi(value().c_str());
    else if (a == "--threads") threads = std::atoi(value().c_str());
    else if (a == "--ids") ids_arg = value();
    else if (a == "--max-new-tokens") s.max_new_tokens = std::atoi(value().c_str());
    else if (a == "--temperature") s.temperature = std::stof(value());
    else if (a == "--top-k") s.top_k = std::atoi(value().c_str());
    else if (a == "--top-p") s.top_p = std::stof(value());
    else if (a == "--seed") s.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (a.rfind("--", 0) == 0) die("unknown option " + a);
    else texts.push_back(a);
  }
  if (from_stdin)
    for (std::string line; std::getline(std::cin, line);) texts.push_back(line);
  if (hex)
    for (auto& t : texts) t = from_hex(t);
  char err[1024] = "";
  if (cmd == "verify") {
    char id[65];
    if (ed_verify(path.c_str(), expect.empty() ? nullptr : expect.c_str(), id, err, sizeof err)) die(err);
    std::printf("{\"ok\": true, \"bundle_id\": \"%s\"}\n", id);
    return 0;
  }
  if (threads && ed_set_threads(threads, err, sizeof err)) die(err);
  auto t0 = std::chrono::steady_clock::now();
  ed_bundle* b = ed_open(path.c_str(), expect.empty() ? nullptr : expect.c_str(), err, sizeof err);
  if (!b) die(err);
  double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  double rss_after_load = status_mb("VmRSS");
  std::vector<double> times, cpu;
  if (cmd == "embed" || cmd == "predict" || cmd == "tokenize") {
    std::vector<float> buf(1 << 16);
    std::vector<int64_t> ids, types;  // grown to each text's token count: the peak RSS is the app's, not ours
    for (int r = 0; r < repeat; ++r)
      for (size_t k = 0; k < texts.size(); ++k) {
        const std::string& t = texts[k];
        auto s0 = std::chrono::steady_clock::now();
        double c0 = cpu_ms();
        size_t n = 0;
        std::string line;
        if (cmd == "tokenize") {
          if (ed_tokenize(b, t.data(), t.size(), truncate, nullptr, nullptr, 0, &n, err, sizeof err)) die(err);
          if (n > ids.size()) { ids.resize(n); types.resize(n); }
          if (ed_tokenize(b, t.data(), t.size(), truncate, ids.data(), types.data(), ids.size(), &n, err, sizeof err)) die(err);
          line = "{\"input_ids\": [";
          for (size_t j = 0; j < n; ++j) line += (j ? ", " : "") + std::to_string(ids[j]);
          line += "], \"token_type_ids\": [";
          for (size_t j = 0; j < n; ++j) line += (j ? ", " : "") + std::to_string(types[j]);
          line += "]}";
        } else if (cmd == "embed") {
          if (ed_embed(b, t.data(), t.size(), buf.data(), buf.size(), &n, err, sizeof err)) die(err);
          line = "{\"embedding\": " + floats(buf.data(), n) + "}";
        } else {
          int32_t label = 0, used = -1;
          if (ed_predict(b, t.data(), t.size(), threshold, buf.data(), buf.size(), &n, &label, &used, err, sizeof err))
            die(err);
          const char* name = ed_label(b, static_cast<size_t>(label));
          std::string lab = (name && ed_num_labels(b) == n) ? name : std::to_string(label);
          line = "{\"label\": " + json_str(lab) + ", \"label_id\": " + std::to_string(label) +
                 ", \"probabilities\": " + floats(buf.data(), n);
          if (threshold >= 0) line += ", \"exit\": " + (used < 0 ? std::string("\"final\"") : std::to_string(used));
          line += "}";
        }
        times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count());
        cpu.push_back(cpu_ms() - c0);
        if (r == repeat - 1) std::printf("%s\n", line.c_str());
      }
  } else if (cmd == "generate") {
    std::vector<int64_t> prompt;
    if (!ids_arg.empty()) {
      for (size_t p = 0; p < ids_arg.size();) {
        size_t q = ids_arg.find(',', p);
        if (q == std::string::npos) q = ids_arg.size();
        prompt.push_back(std::strtoll(ids_arg.substr(p, q - p).c_str(), nullptr, 10));
        p = q + 1;
      }
    } else {
      std::string text;
      for (const auto& t : texts) text += (text.empty() ? "" : " ") + t;
      size_t n = 0;
      if (ed_encode_prompt(b, text.data(), text.size(), 1, nullptr, 0, &n, err, sizeof err)) die(err);
      prompt.resize(n);
      if (ed_encode_prompt(b, text.data(), text.size(), 1, prompt.data(), prompt.size(), &n, err, sizeof err)) die(err);
    }
    std::vector<int64_t> out(static_cast<size_t>(std::max(s.max_new_tokens, 1)));
    size_t n = 0;
    for (int r = 0; r < repeat; ++r) {
      auto s0 = std::chrono::steady_clock::now();
      double c0 = cpu_ms();
      if (ed_generate(b, prompt.data(), prompt.size(), &s, out.data(), out.size(), &n, err, sizeof err)) die(err);
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count());
      cpu.push_back(cpu_ms() - c0);
    }
    char* text = ed_decode(b, out.data(), n, err, sizeof err);
    std::string ids = "[", pids = "[";
    for (size_t j = 0; j < n; ++j) ids += (j ? ", " : "") + std::to_string(out[j]);
    for (size_t j = 0; j < prompt.size(); ++j) pids += (j ? ", " : "") + std::to_string(prompt[j]);
    std::printf("{\"ids\": %s], \"text\": %s, \"prompt_ids\": %s]}\n", ids.c_str(), json_str(text ? text : "").c_str(),
                pids.c_str());
    std::free(text);
  } else {
    die("unknown command '" + cmd + "' (verify, embed, predict, tokenize, generate)");
  }
  if (timing)
    std::fprintf(stderr,
                 "{\"load_ms\": %f, \"times_ms\": %s, \"cpu_ms\": %s, \"peak_rss_mb\": %f, \"rss_after_load_mb\": %f, "
                 "\"threads\": %d, \"bundle_id\": \"%s\"}\n",
                 load_ms, list(times).c_str(), list(cpu).c_str(), peak_rss_mb(), rss_after_load, ed_threads(),
                 ed_bundle_id(b));
  ed_close(b);
  return 0;
}
