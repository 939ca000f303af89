// Bundle verification with the Python runtime's rules and wording (edgedistill/runtime/format.py):
// manifest, format version, field types, the sha256 of every file, no unlisted file, the bundle id.
#pragma once

#include <stdexcept>
#include <string>

#include "json.hpp"

namespace edgedistill {

// Any refusal: what() is one line, the same text the Python runtime's ModelError carries.
struct BundleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct VerifiedBundle {
  std::string path;  // as given, without trailing '/'
  Json manifest;
  std::string id;  // sha256 of manifest.json's bytes
};

std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::string& path);  // throws BundleError when unreadable
bool read_file(const std::string& path, std::string& out);
// expect_id: empty = any bundle.
VerifiedBundle verify_bundle(const std::string& path, const std::string& expect_id);

}  // namespace edgedistill
