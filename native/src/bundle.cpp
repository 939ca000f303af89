#include "bundle.hpp"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <set>
#include <vector>

namespace edgedistill {
namespace {

const char* kManifest = "manifest.json";
const char* kSignature = "signature.json";

std::string hex(const unsigned char* d, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned k = 0; k < n; ++k) { out += digits[d[k] >> 4]; out += digits[d[k] & 15]; }
  return out;
}

// Python's repr() of a JSON value, for messages that quote one ({version!r}).
std::string py_repr(const Json* v) {
  if (!v || v->is_null()) return "None";
  if (v->is_bool()) return v->b ? "True" : "False";
  if (v->is_string()) return "'" + v->str + "'";
  return v->dump();
}

bool is_dir(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode); }
bool is_file(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode); }
bool exists(const std::string& p) { struct stat st; return stat(p.c_str(), &st) == 0; }

std::vector<std::string> file_names(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != ".." && is_file(dir + "/" + n)) out.push_back(n);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void check_types(const Json& m, const std::string& where) {
  // key -> accepted kinds (o object, s string, i integer, l list, n null, b bool), required
  struct Field { const char* key; const char* kinds; bool required; const char* want; };
  static const Field fields[] = {
      {"model_file", "s", true, "a string"}, {"files", "o", true, "an object"}, {"tokenizer", "o", true, "an object"},
      {"task", "s", false, "a string"}, {"kind", "s", false, "a string"}, {"backend", "s", false, "a string"},
      {"target", "o", false, "an object"}, {"quantization", "o", false, "an object"},
      {"inputs", "l", false, "a list"}, {"outputs", "l", false, "a list"}, {"max_length", "i", false, "an integer"},
      {"labels", "ln", false, "another type"}, {"pooling", "sn", false, "another type"},
      {"normalize", "bn", false, "another type"}, {"parity", "on", false, "another type"},
      {"generation", "o", false, "an object"}, {"scheme", "s", false, "a string"}};
  auto bad = [&](const std::string& key, const std::string& want) {
    const Json* v = m.get(key);
    throw BundleError(where + ": key '" + key + "' must be " + want + ", got " + (v ? v->dump() : "null").substr(0, 60));
  };
  for (const Field& f : fields) {
    const Json* v = m.get(f.key);
    if (!v) {
      if (f.required) throw BundleError(where + ": key '" + f.key + "' is missing");
      continue;
    }
    std::string k = f.kinds;
    bool ok = (k.find('o') != std::string::npos && v->is_object()) || (k.find('s') != std::string::npos && v->is_string()) ||
              (k.find('i') != std::string::npos && v->is_integer()) || (k.find('l') != std::string::npos && v->is_array()) ||
              (k.find('n') != std::string::npos && v->is_null()) || (k.find('b') != std::string::npos && v->is_bool());
    if (!ok) bad(f.key, f.want);
  }
  for (const auto& kv : m.get("files")->obj) {
    const Json* sha = kv.second.get("sha256");
    if (!kv.second.is_object() || !sha || !sha->is_string()) bad("files", "an object of file name -> {sha256, bytes}");
  }
  const Json* tf = m.get("tokenizer")->get("file");
  if (tf && !tf->is_string() && !tf->is_null()) bad("tokenizer", "an object whose 'file' is a file name");
  for (const char* key : {"inputs", "outputs"}) {
    const Json* list = m.get(key);
    if (!list || list->is_null()) continue;
    for (const Json& i : list->arr) {
      const Json* n = i.get("name");
      if (!i.is_object() || !n || !n->is_string()) bad(key, "a list of {name, dtype, shape} objects");
    }
  }
  if (const Json* target = m.get("target")) {
    const Json* t = target->get("threads");
    if (t && !t->is_null() && (!t->is_integer() || t->integer < 1)) bad("target", "an object whose 'threads' is a positive integer");
  }
  if (const Json* ml = m.get("max_length"); ml && (ml->integer < 1 || ml->integer > (1 << 20)))
    bad("max_length", "a positive token count");
  if (const Json* labels = m.get("labels"); labels && labels->is_array())
    for (const Json& l : labels->arr)
      if (!l.is_string()) bad("labels", "a list of label names");
}

}  // namespace

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return !f.bad();
}

std::string sha256_hex(const std::string& bytes) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(bytes.data(), bytes.size(), d, &n, EVP_sha256(), nullptr);
  return hex(d, n);
}

std::string sha256_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw BundleError(path + ": cannot be read");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), f)) > 0) EVP_DigestUpdate(ctx, buf.data(), got);
  bool err = std::ferror(f);
  std::fclose(f);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(ctx, d, &n);
  EVP_MD_CTX_free(ctx);
  if (err) throw BundleError(path + ": cannot be read");
  return hex(d, n);
}

VerifiedBundle verify_bundle(const std::string& given, const std::string& expect_id) {
  std::string path = given;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (!is_dir(path)) {
    if (is_file(path)) {
      std::string head;
      std::ifstream f(path, std::ios::binary);
      char b[4] = {0, 0, 0, 0};
      f.read(b, 4);
      if (b[0] == 'P' && b[1] == 'K')
        throw BundleError(path + ": zip bundles are not read by the native runtime; unzip it into a folder "
                                 "(the manifest's sha256s are checked the same way)");
    }
    if (exists(path)) throw BundleError(path + ": not a bundle (expected a bundle folder or a .zip of one)");
    throw BundleError(path + ": bundle not found");
  }
  std::string where = path + "/" + kManifest;
  std::string bytes;
  if (!is_file(where) || !read_file(where, bytes)) throw BundleError(path + ": not a bundle (no manifest.json)");
  VerifiedBundle out;
  out.path = path;
  try {
    out.manifest = Json::parse(bytes);
  } catch (const std::exception& e) {
    throw BundleError(where + ": unreadable manifest (" + e.what() + ")");
  }
  const Json& m = out.manifest;
  if (!m.is_object()) throw BundleError(where + ": the manifest is not a JSON object");
  const Json* version = m.get("format_version");
  if (!version || !version->is_integer() || version->integer != 2)
    throw BundleError(where + ": bundle format " + py_repr(version) + " is not supported (this edgedistill reads "
                      "2); re-export the bundle with this version");
  check_types(m, where);
  out.id = sha256_hex(bytes);
  if (!expect_id.empty()) {
    std::string want;
    size_t a = expect_id.find_first_not_of(" \t\n\r"), b = expect_id.find_last_not_of(" \t\n\r");
    if (a != std::string::npos) want = expect_id.substr(a, b - a + 1);
    std::transform(want.begin(), want.end(), want.begin(), ::tolower);
    if (want.size() != 64 || want.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw BundleError("expected bundle id '" + expect_id + "' is not a sha256 (64 hex digits)");
    if (out.id != want)
      throw BundleError(path + ": bundle id " + out.id + " is not the expected " + want +
                        " (a different or modified bundle)");
  }
  const Json& listed = *m.get("files");
  if (!listed.get(m.get_string("model_file")))
    throw BundleError(path + "/" + kManifest + ": the model file is not listed in 'files'");
  const Json* tok = m.get("tokenizer")->get("file");
  if (!tok || !tok->is_string() || tok->str.empty() || !listed.get(tok->str))
    throw BundleError(path + ": the bundle has no tokenizer (manifest 'tokenizer.file' not among its files); "
                      "re-export it with a student folder that has tokenizer.json");
  std::vector<std::string> present = file_names(path);
  std::set<std::string> present_set(present.begin(), present.end());
  for (const auto& kv : listed.obj) {
    const std::string& name = kv.first;
    bool plain = !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
    if (!plain || !present_set.count(name))
      throw BundleError(path + ": file '" + name + "' listed in the manifest is missing");
    if (sha256_file(path + "/" + name) != kv.second.get_string("sha256"))
      throw BundleError(path + "/" + name + ": sha256 does not match the manifest (modified or corrupt)");
  }
  for (const std::string& name : present)
    if (!listed.get(name) && name != kManifest && name != kSignature)
      throw BundleError(path + ": file '" + name + "' is not listed in the manifest");
  return out;
}

}  // namespace edgedistill
