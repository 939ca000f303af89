// A small strict JSON reader (RFC 8259): enough for manifest.json and tokenizer.json, no dependency.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edgedistill {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Type type = Type::Null;
  bool b = false;
  double num = 0;
  bool is_int = false;  // the literal had no fraction or exponent
  int64_t integer = 0;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;  // in file order

  static Json parse(const std::string& text);  // throws std::runtime_error("... at byte N")

  bool is_null() const { return type == Type::Null; }
  bool is_object() const { return type == Type::Object; }
  bool is_array() const { return type == Type::Array; }
  bool is_string() const { return type == Type::String; }
  bool is_bool() const { return type == Type::Bool; }
  bool is_integer() const { return type == Type::Number && is_int; }
  bool is_number() const { return type == Type::Number; }
  // nullptr when absent or when this is not an object
  const Json* get(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback = "") const;
  // A short JSON rendering of a value, for error messages.
  std::string dump() const;
};

}  // namespace edgedistill
