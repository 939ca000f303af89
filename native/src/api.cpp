// The C API: a verified bundle, its tokenizer and its ExecuTorch program behind one mutex.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/platform.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "bundle.hpp"
#include "edgedistill.h"
#include "llm_kernels.hpp"
#include "tokenizer.hpp"
#include "unicode.hpp"

using edgedistill::BundleError;
using edgedistill::Json;
using executorch::extension::Module;
using executorch::extension::make_tensor_ptr;
using executorch::runtime::EValue;

// The wheel ships libexecutorch_threadpool.so but not threadpool.h: the two members used here, declared as
// upstream declares them (extension/threadpool/threadpool.h, executorch 1.5).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

// The runtime's own log lines (CPU probing, "Reading file ...") would clutter a host app's stderr: only
// warnings and errors are passed on. Overrides the PAL's weak default.
extern "C" void et_pal_emit_log_message(et_timestamp_t, et_pal_log_level_t level, const char* filename, const char*,
                                        size_t line, const char* message, size_t length) {
  if (level == kInfo || level == kDebug) return;
  std::fprintf(stderr, "executorch %s:%zu: %.*s\n", filename, line, static_cast<int>(length), message);
}

namespace {

const char* kInputOrder[] = {"input_ids", "attention_mask", "token_type_ids"};

void set_err(char* err, size_t len, const std::string& msg) {
  if (!err || !len) return;
  size_t n = std::min(len - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

}  // namespace

struct ed_bundle {
  edgedistill::VerifiedBundle vb;
  std::string task;
  std::unique_ptr<edgedistill::Tokenizer> tok;
  std::unique_ptr<Module> module;
  std::mutex mu;
  std::vector<std::string> labels, output_names, exit_names;
  size_t max_length = 512, program_length = 0, num_inputs = 0;
  int64_t pad_id = 0, pad_type_id = 0;
  // causal LM
  size_t max_context = 0;
  std::vector<int64_t> stop_ids;
  int64_t bos_id = -1;
  bool add_bos = false;
  std::string tok_error;

  const edgedistill::Tokenizer& tokenizer() const {
    if (!tok) throw BundleError(tok_error);
    return *tok;
  }

  std::vector<std::vector<float>> run_encoder(const std::string& text) {
    edgedistill::Encoding e = tok->encode(text, true, max_length);
    size_t L = program_length;
    std::vector<int64_t> cols[3];
    cols[0] = e.ids; cols[1] = e.attention_mask; cols[2] = e.type_ids;
    // Padded to the program's fixed length as the Python runtime pads (pad id, mask 0, pad type id)
    int64_t pads[3] = {pad_id, 0, pad_type_id};
    std::vector<executorch::extension::TensorPtr> keep;
    std::vector<EValue> inputs;
    for (size_t k = 0; k < num_inputs; ++k) {
      std::vector<int64_t> v = cols[k];
      v.resize(L, pads[k]);
      keep.push_back(make_tensor_ptr({1, static_cast<int32_t>(L)}, std::move(v)));
      inputs.emplace_back(keep.back());
    }
    std::lock_guard<std::mutex> lock(mu);
    auto res = module->forward(inputs);
    if (!res.ok())
      throw BundleError(vb.path + ": the ExecuTorch program failed (error " +
                        std::to_string(static_cast<int>(res.error())) + ")");
    std::vector<std::vector<float>> out;
    for (const EValue& v : *res) {
      if (!v.isTensor()) { out.emplace_back(); continue; }
      const auto& t = v.toTensor();
      if (t.scalar_type() != executorch::aten::ScalarType::Float) { out.emplace_back(); continue; }
      const float* p = t.const_data_ptr<float>();
      out.emplace_back(p, p + t.numel());  // copied: the runtime reuses its output buffers
    }
    return out;
  }

  const std::vector<float>& output(const std::vector<std::vector<float>>& outs, const std::string& name) {
    std::vector<std::string> names = output_names;
    if (names.size() != outs.size()) {
      if (outs.size() != 2)
        throw BundleError(vb.path + ": the program returns " + std::to_string(outs.size()) + " outputs, the bundle names " +
                          std::to_string(names.size()));
      names = {"last_hidden_state", "sentence_embedding"};
    }
    for (size_t k = 0; k < names.size(); ++k)
      if (names[k] == name) return outs[k];
    throw BundleError(vb.path + ": the model has no '" + name + "' output");
  }
};

namespace {

std::vector<float> softmax(const std::vector<float>& x) {
  std::vector<float> z(x.size());
  if (x.empty()) return z;
  float m = *std::max_element(x.begin(), x.end());
  float s = 0;
  for (size_t k = 0; k < x.size(); ++k) { z[k] = std::exp(x[k] - m); s += z[k]; }
  for (float& v : z) v /= s;
  return z;
}

void load_model(ed_bundle* b) {
  const Json& m = b->vb.manifest;
  std::string backend = m.get_string("backend", "onnxruntime");
  if (backend != "executorch")
    throw BundleError(b->vb.path + ": backend '" + backend + "' is not run by the native runtime (it links the "
                      "ExecuTorch C++ runtime only; no registry package ships onnxruntime's C headers); export the "
                      "bundle with an ExecuTorch scheme (et-fp32, et-int8)");
  std::string file = b->vb.path + "/" + m.get_string("model_file");
  b->module = std::make_unique<Module>(file, Module::LoadMode::Mmap);
  auto err = b->module->load_forward();
  if (err != executorch::runtime::Error::Ok)
    throw BundleError(file + ": the ExecuTorch runtime cannot load the program (error " +
                      std::to_string(static_cast<int>(err)) + "); re-export it with 'edgedistill export' using this "
                      "executorch version");
}

ed_bundle* open_bundle(const char* path, const char* expect_id) {
  auto b = std::make_unique<ed_bundle>();
  b->vb = edgedistill::verify_bundle(path ? path : "", expect_id ? expect_id : "");
  const Json& m = b->vb.manifest;
  std::string tok_text;
  std::string tok_file = m.get("tokenizer")->get_string("file");
  edgedistill::read_file(b->vb.path + "/" + tok_file, tok_text);
  try {
    b->tok = std::make_unique<edgedistill::Tokenizer>(tok_text);
  } catch (const std::exception& e) {
    b->tok_error = b->vb.path + ": the bundle's tokenizer cannot be loaded (" + e.what() + ")";
    // A causal LM still generates from token ids the caller encoded; an encoder needs its tokenizer.
    if (m.get_string("kind") != "causal-lm") throw BundleError(b->tok_error);
  }
  if (m.get_string("kind") == "causal-lm") {
    b->task = "causal-lm";
    std::string gen_text;
    if (!edgedistill::read_file(b->vb.path + "/generation.json", gen_text))
      throw BundleError(b->vb.path + ": a causal-LM bundle without generation.json");
    Json gen = Json::parse(gen_text);
    const Json* mc = gen.get("max_context");
    if (!mc || !mc->is_integer() || mc->integer < 1) throw BundleError(b->vb.path + "/generation.json: key 'max_context' is missing");
    b->max_context = static_cast<size_t>(mc->integer);
    if (const Json* stops = gen.get("eos_token_ids"))
      for (const Json& s : stops->arr) b->stop_ids.push_back(s.integer);
    if (const Json* bos = gen.get("bos_token_id"); bos && bos->is_integer()) b->bos_id = bos->integer;
    if (const Json* ab = gen.get("add_bos"); ab && ab->is_bool()) b->add_bos = ab->b;
    // "llama": ExecuTorch's LLM kernels (attention "custom"), which this runtime carries (llm_kernels.cpp); a name
    // it does not know would fail at the first step with "Missing operator": say why first.
    if (const Json* k = gen.get("kernels"); k && k->is_string() && k->str != "aten") {
      if (k->str != "llama")
        throw BundleError(b->vb.path + "/generation.json: kernels '" + k->str + "' are not in this runtime (aten, "
                          "llama); re-export the bundle with this edgedistill version");
      edgedistill::register_llm_kernels();
    }
    load_model(b.get());
    return b.release();
  }
  b->task = m.get_string("task");
  if (b->task != "sentence-embedding" && b->task != "classification" && b->task != "text-classification")
    throw BundleError(b->vb.path + ": task '" + b->task + "' is not supported by this runtime (sentence-embedding, "
                      "classification, text-classification)");
  if (const Json* ml = m.get("max_length")) b->max_length = static_cast<size_t>(ml->integer);
  if (const Json* labels = m.get("labels"); labels && labels->is_array())
    for (const Json& l : labels->arr) b->labels.push_back(l.str);
  if (const Json* outs = m.get("outputs"); outs && outs->is_array())
    for (const Json& o : outs->arr) b->output_names.push_back(o.get_string("name"));
  if (const Json* ee = m.get("early_exits"); ee && ee->is_object())
    if (const Json* outs = ee->get("outputs"); outs && outs->is_array())
      for (const Json& o : outs->arr) b->exit_names.push_back(o.str);
  const Json* spec = m.get("tokenizer");
  std::string pad_token = spec->get_string("pad_token", "[PAD]");
  if (const Json* pid = spec->get("pad_id"); pid && pid->is_integer()) b->pad_id = pid->integer;
  else b->pad_id = b->tok->token_to_id(pad_token);
  if (b->pad_id < 0) throw BundleError("the bundle's tokenizer has no padding token '" + pad_token + "'");
  if (const Json* pt = spec->get("pad_type_id"); pt && pt->is_integer()) b->pad_type_id = pt->integer;
  load_model(b.get());
  auto meta = b->module->method_meta("forward");
  if (!meta.ok()) throw BundleError(b->vb.path + ": the program has no 'forward' method");
  b->num_inputs = std::min<size_t>(meta->num_inputs(), 3);
  auto in0 = meta->input_tensor_meta(0);
  if (!in0.ok() || in0->sizes().size() != 2) throw BundleError(b->vb.path + ": the program's first input is not [1, length]");
  b->program_length = static_cast<size_t>(in0->sizes()[1]);
  std::vector<std::string> wanted;
  if (const Json* ins = m.get("inputs"); ins && ins->is_array())
    for (const Json& i : ins->arr) wanted.push_back(i.get_string("name"));
  for (size_t k = 0; k < wanted.size(); ++k)
    if (std::find(kInputOrder, kInputOrder + b->num_inputs, wanted[k]) == kInputOrder + b->num_inputs)
      throw BundleError(b->vb.path + ": the model's inputs do not match the manifest's");
  return b.release();
}

template <typename F>
int guarded(char* err, size_t err_len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    set_err(err, err_len, e.what());
  } catch (...) {
    set_err(err, err_len, "unknown error");
  }
  return -1;
}

std::string text_of(const char* text, size_t len) {
  if (!text && len) throw std::runtime_error("text is NULL");
  return std::string(text ? text : "", len);
}

std::string check_text(const std::string& t) {
  try {
    (void)edgedistill::unicode::decode_utf8(t);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("the text is not valid UTF-8 (") + e.what() + ")");
  }
  return t;
}

int64_t pick(const std::vector<float>& logits, const ed_sampling& s, std::mt19937_64& rng) {
  size_t V = logits.size();
  if (s.temperature <= 0)  // first maximum, as numpy's argmax
    return static_cast<int64_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<double> z(V);
  for (size_t k = 0; k < V; ++k) z[k] = double(logits[k]) / s.temperature;
  const double ninf = -INFINITY;
  if (s.top_k > 0 && static_cast<size_t>(s.top_k) < V) {
    std::vector<double> sorted(z);
    std::nth_element(sorted.begin(), sorted.begin() + (V - s.top_k), sorted.end());
    double kth = sorted[V - s.top_k];
    for (double& v : z) if (v < kth) v = ninf;
  }
  if (s.top_p < 1.0f) {
    std::vector<size_t> order(V);
    for (size_t k = 0; k < V; ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return z[a] > z[b]; });
    double m = z[order[0]], total = 0;
    std::vector<double> p(V);
    for (size_t k = 0; k < V; ++k) total += (p[k] = std::exp(z[order[k]] - m));
    double before = 0;
    for (size_t k = 0; k < V; ++k) {
      double pk = p[k] / total;
      if (before >= s.top_p) z[order[k]] = ninf;  // the mass before it already reaches top_p
      before += pk;
    }
  }
  double m = *std::max_element(z.begin(), z.end());
  std::vector<double> w(V);
  for (size_t k = 0; k < V; ++k) w[k] = std::exp(z[k] - m);
  std::discrete_distribution<size_t> dist(w.begin(), w.end());
  return static_cast<int64_t>(dist(rng));
}

}  // namespace

extern "C" {

const char* ed_version(void) { return "0.1.0"; }

int ed_set_threads(int32_t n, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (n < 1) throw std::runtime_error("threads " + std::to_string(n) + ": expected a count >= 1");
    auto* pool = executorch::extension::threadpool::get_threadpool();
    if (!pool || !pool->_unsafe_reset_threadpool(static_cast<uint32_t>(n)))
      throw std::runtime_error("the ExecuTorch thread pool cannot be resized");
  });
}

int32_t ed_threads(void) {
  auto* pool = executorch::extension::threadpool::get_threadpool();
  return pool ? static_cast<int32_t>(pool->get_thread_count()) : 0;
}

int ed_verify(const char* path, const char* expect_id, char* id_out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto vb = edgedistill::verify_bundle(path ? path : "", expect_id ? expect_id : "");
    if (id_out) std::memcpy(id_out, vb.id.c_str(), 65);
  });
}

ed_bundle* ed_open(const char* path, const char* expect_id, char* err, size_t err_len) {
  ed_bundle* out = nullptr;
  guarded(err, err_len, [&] { out = open_bundle(path, expect_id); });
  return out;
}

void ed_close(ed_bundle* b) { delete b; }
const char* ed_bundle_id(const ed_bundle* b) { return b ? b->vb.id.c_str() : ""; }
const char* ed_task(const ed_bundle* b) { return b ? b->task.c_str() : ""; }
size_t ed_num_labels(const ed_bundle* b) { return b ? b->labels.size() : 0; }
const char* ed_label(const ed_bundle* b, size_t i) { return b && i < b->labels.size() ? b->labels[i].c_str() : nullptr; }

int ed_tokenize(ed_bundle* b, const char* text, size_t text_len, int truncate, int64_t* ids, int64_t* type_ids,
                size_t cap, size_t* n, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!b) throw std::runtime_error("no bundle");
    std::string t = check_text(text_of(text, text_len));
    auto e = b->tokenizer().encode(t, b->task != "causal-lm", truncate && b->task != "causal-lm" ? b->max_length : 0);
    if (!truncate && b->task != "causal-lm" && e.ids.size() > b->max_length)
      throw std::runtime_error("text 0 is " + std::to_string(e.ids.size()) + " tokens long, over the bundle's max_length " +
                               std::to_string(b->max_length) + "; shorten it or allow truncation");
    if (n) *n = e.ids.size();
    if (ids || type_ids) {
      if (e.ids.size() > cap) throw std::runtime_error("output buffer too small: " + std::to_string(e.ids.size()) + " tokens");
      if (ids) std::copy(e.ids.begin(), e.ids.end(), ids);
      if (type_ids) std::copy(e.type_ids.begin(), e.type_ids.end(), type_ids);
    }
  });
}

int ed_embed(ed_bundle* b, const char* text, size_t text_len, float* out, size_t cap, size_t* dim, char* err,
             size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!b || b->task == "causal-lm") throw std::runtime_error("embed needs a sentence-embedding bundle");
    auto outs = b->run_encoder(check_text(text_of(text, text_len)));
    const auto& e = b->output(outs, "sentence_embedding");
    if (dim) *dim = e.size();
    if (out) {
      if (e.size() > cap) throw std::runtime_error("output buffer too small: " + std::to_string(e.size()) + " values");
      std::copy(e.begin(), e.end(), out);
    }
  });
}

int ed_predict(ed_bundle* b, const char* text, size_t text_len, float exit_threshold, float* probs, size_t cap,
               size_t* n, int32_t* label, int32_t* exit_used, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!b || b->task == "causal-lm" || b->task == "sentence-embedding")
      throw std::runtime_error("predict needs a classification bundle");
    if (exit_threshold > 1.0f) throw std::runtime_error("exit_threshold " + std::to_string(exit_threshold) +
                                                        ": expected a probability in [0, 1]");
    auto outs = b->run_encoder(check_text(text_of(text, text_len)));
    std::vector<float> p = softmax(b->output(outs, "logits"));
    int32_t used = -1;
    if (exit_threshold >= 0)
      for (const std::string& name : b->exit_names) {
        std::vector<float> q = softmax(b->output(outs, name));
        if (!q.empty() && *std::max_element(q.begin(), q.end()) >= exit_threshold) {
          p = q;
          used = std::atoi(name.substr(name.find('_') + 1).c_str());
          break;
        }
      }
    if (n) *n = p.size();
    if (label) *label = static_cast<int32_t>(std::max_element(p.begin(), p.end()) - p.begin());
    if (exit_used) *exit_used = used;
    if (probs) {
      if (p.size() > cap) throw std::runtime_error("output buffer too small: " + std::to_string(p.size()) + " classes");
      std::copy(p.begin(), p.end(), probs);
    }
  });
}

int ed_encode_prompt(ed_bundle* b, const char* text, size_t text_len, int add_bos, int64_t* ids, size_t cap,
                     size_t* n, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!b || b->task != "causal-lm") throw std::runtime_error("encode_prompt needs a causal-LM bundle");
    std::string t = check_text(text_of(text, text_len));
    if (t.find_first_not_of(" \t\n\r\f\v") == std::string::npos) throw std::runtime_error("empty prompt: give some text");
    std::vector<int64_t> v = b->tokenizer().encode(t, false, 0).ids;
    if (add_bos && b->add_bos && b->bos_id >= 0 && (v.empty() || v[0] != b->bos_id)) v.insert(v.begin(), b->bos_id);
    if (n) *n = v.size();
    if (ids) {
      if (v.size() > cap) throw std::runtime_error("output buffer too small: " + std::to_string(v.size()) + " tokens");
      std::copy(v.begin(), v.end(), ids);
    }
  });
}

int ed_generate(ed_bundle* b, const int64_t* prompt, size_t prompt_len, const ed_sampling* sampling, int64_t* out,
                size_t cap, size_t* n_out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    if (!b || b->task != "causal-lm") throw std::runtime_error("generate needs a causal-LM bundle");
    ed_sampling s = sampling ? *sampling : ed_sampling{64, 0.0f, 0, 1.0f, 0};
    if (!prompt_len) throw std::runtime_error("empty prompt: give at least one token of text");
    if (prompt_len >= b->max_context)
      throw std::runtime_error("the prompt is " + std::to_string(prompt_len) + " tokens; this model's context holds " +
                               std::to_string(b->max_context) + " (prompt + new tokens): shorten the prompt");
    std::mt19937_64 rng(s.seed);
    std::lock_guard<std::mutex> lock(b->mu);  // the KV cache lives in the program: one generation at a time
    auto step = [&](const std::vector<int64_t>& ids, size_t pos) {
      std::vector<int64_t> cp(ids.size());
      for (size_t k = 0; k < ids.size(); ++k) cp[k] = static_cast<int64_t>(pos + k);
      auto x = make_tensor_ptr({1, static_cast<int32_t>(ids.size())}, std::vector<int64_t>(ids));
      auto c = make_tensor_ptr({static_cast<int32_t>(ids.size())}, std::move(cp));
      auto res = b->module->forward({EValue(x), EValue(c)});
      if (!res.ok()) throw BundleError(b->vb.path + ": the ExecuTorch program failed (error " +
                                       std::to_string(static_cast<int>(res.error())) + ")");
      const auto& t = (*res)[0].toTensor();
      size_t V = static_cast<size_t>(t.sizes()[t.dim() - 1]);
      size_t rows = t.dim() >= 2 ? static_cast<size_t>(t.sizes()[t.dim() - 2]) : 1;
      const float* p = t.const_data_ptr<float>() + (rows - 1) * V;  // batch 0, last position
      return std::vector<float>(p, p + V);
    };
    std::vector<int64_t> made;
    std::vector<float> logits = step(std::vector<int64_t>(prompt, prompt + prompt_len), 0);
    size_t pos = prompt_len;
    for (int32_t i = 0; i < s.max_new_tokens; ++i) {
      int64_t tok = pick(logits, s, rng);
      if (std::find(b->stop_ids.begin(), b->stop_ids.end(), tok) != b->stop_ids.end()) break;
      made.push_back(tok);
      if (pos >= b->max_context || i == s.max_new_tokens - 1) break;
      logits = step({tok}, pos);
      ++pos;
    }
    if (n_out) *n_out = made.size();
    if (out) {
      if (made.size() > cap) throw std::runtime_error("output buffer too small: " + std::to_string(made.size()) + " tokens");
      std::copy(made.begin(), made.end(), out);
    }
  });
}

char* ed_decode(ed_bundle* b, const int64_t* ids, size_t n, char* err, size_t err_len) {
  char* out = nullptr;
  guarded(err, err_len, [&] {
    if (!b) throw std::runtime_error("no bundle");
    std::string s = b->tokenizer().decode(std::vector<int64_t>(ids, ids + n), true);
    out = static_cast<char*>(std::malloc(s.size() + 1));
    std::memcpy(out, s.c_str(), s.size() + 1);
  });
  return out;
}

}  // extern "C"
