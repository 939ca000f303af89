// ExecuTorch's LLM kernels llama::update_cache.out and llama::custom_sdpa.out, for programs exported with
// attention "custom". The wheel's own implementation (libcustom_ops_aot_lib.so) links libtorch and the Python
// extension, so it cannot be linked into an app; these are a plain C++ equivalent of the parts our exports call:
// fp32 caches [batch, max_len, kv_heads, head_dim], causal attention over the filled positions only, grouped
// query heads, no mask and no dropout (refused with a message rather than computed wrongly).
#include "llm_kernels.hpp"

#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/kernel/kernel_includes.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

namespace {

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;

bool contiguous_4d(const Tensor& t) {
  return t.dim() == 4 && executorch::runtime::tensor_is_default_dim_order(t);
}

// update_cache(Tensor value, Tensor(a!) cache, SymInt start_pos, *, Tensor(b!) out): value [b, s, h, d] is written
// to cache[:, start_pos:start_pos + s]. `cache` is mutated through a const reference: ExecuTorch's boxing allows
// one non-const tensor (the out), and a Tensor's mutable_data_ptr is const.
Tensor& update_cache_out(KernelRuntimeContext& ctx, const Tensor& value, const Tensor& cache, int64_t start_pos,
                         Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, contiguous_4d(value) && contiguous_4d(cache), InvalidArgument, out,
                      "llama::update_cache: value and cache must be contiguous 4-D tensors");
  ET_KERNEL_CHECK_MSG(ctx, value.scalar_type() == cache.scalar_type(), InvalidArgument, out,
                      "llama::update_cache: value and cache dtypes differ");
  ET_KERNEL_CHECK_MSG(ctx, value.size(0) == cache.size(0) && value.size(2) == cache.size(2) &&
                      value.size(3) == cache.size(3), InvalidArgument, out,
                      "llama::update_cache: value and cache shapes differ outside the sequence dimension");
  const int64_t batch = value.size(0), seq = value.size(1), max_len = cache.size(1);
  ET_KERNEL_CHECK_MSG(ctx, start_pos >= 0 && start_pos + seq <= max_len, InvalidArgument, out,
                      "llama::update_cache: positions %lld..%lld outside a cache of %lld",
                      static_cast<long long>(start_pos), static_cast<long long>(start_pos + seq),
                      static_cast<long long>(max_len));
  const size_t row = static_cast<size_t>(value.size(2) * value.size(3)) * value.element_size();
  const char* src = value.const_data_ptr<char>();
  char* dst = cache.mutable_data_ptr<char>();
  for (int64_t b = 0; b < batch; ++b)
    std::memcpy(dst + (b * max_len + start_pos) * row, src + b * seq * row, seq * row);
  return out;
}

// custom_sdpa(query [b, s, hq, d], key/value caches [b, max_len, hkv, d], SymInt start_pos, Tensor? attn_mask,
// float dropout_p, bool is_causal, float? scale, *, out [b, s, hq, d]): the query at position start_pos + i reads
// keys 0..start_pos + i (causal) or 0..start_pos + s - 1; query head h reads KV head h / (hq / hkv).
Tensor& custom_sdpa_out(KernelRuntimeContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        int64_t start_pos, const std::optional<Tensor>& attn_mask, double dropout_p, bool is_causal,
                        std::optional<double> scale, Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, contiguous_4d(q) && contiguous_4d(k) && contiguous_4d(v), InvalidArgument, out,
                      "llama::custom_sdpa: query and caches must be contiguous 4-D tensors");
  ET_KERNEL_CHECK_MSG(ctx, q.scalar_type() == ScalarType::Float && k.scalar_type() == ScalarType::Float &&
                      v.scalar_type() == ScalarType::Float, InvalidArgument, out,
                      "llama::custom_sdpa: this runtime computes fp32 attention only");
  ET_KERNEL_CHECK_MSG(ctx, !attn_mask.has_value() && dropout_p == 0.0, InvalidArgument, out,
                      "llama::custom_sdpa: an attention mask or dropout is not supported by this runtime");
  const int64_t batch = q.size(0), seq = q.size(1), hq = q.size(2), dim = q.size(3);
  const int64_t max_len = k.size(1), hkv = k.size(2);
  ET_KERNEL_CHECK_MSG(ctx, k.size(0) == batch && v.size(0) == batch && k.size(3) == dim && v.size(3) == dim &&
                      v.size(1) == max_len && v.size(2) == hkv && hkv > 0 && hq % hkv == 0, InvalidArgument, out,
                      "llama::custom_sdpa: query and cache shapes do not match");
  ET_KERNEL_CHECK_MSG(ctx, start_pos >= 0 && start_pos + seq <= max_len, InvalidArgument, out,
                      "llama::custom_sdpa: positions beyond the cache");
  ET_KERNEL_CHECK(ctx, executorch::runtime::resize_tensor(out, q.sizes()) == Error::Ok, InvalidArgument, out);
  const float s = static_cast<float>(scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(dim)));
  const int64_t group = hq / hkv;
  const float* qd = q.const_data_ptr<float>();
  const float* kd = k.const_data_ptr<float>();
  const float* vd = v.const_data_ptr<float>();
  float* od = out.mutable_data_ptr<float>();
  std::vector<float> w(static_cast<size_t>(start_pos + seq));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < seq; ++i) {
      const int64_t n = is_causal ? start_pos + i + 1 : start_pos + seq;
      for (int64_t h = 0; h < hq; ++h) {
        const float* qv = qd + ((b * seq + i) * hq + h) * dim;
        const int64_t kvh = h / group;
        float top = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          const float* kv = kd + ((b * max_len + j) * hkv + kvh) * dim;
          float dot = 0.f;
          for (int64_t e = 0; e < dim; ++e) dot += qv[e] * kv[e];
          w[j] = dot * s;
          top = std::max(top, w[j]);
        }
        float total = 0.f;
        for (int64_t j = 0; j < n; ++j) total += (w[j] = std::exp(w[j] - top));
        float* o = od + ((b * seq + i) * hq + h) * dim;
        std::fill(o, o + dim, 0.f);
        for (int64_t j = 0; j < n; ++j) {
          const float* vv = vd + ((b * max_len + j) * hkv + kvh) * dim;
          const float p = w[j] / total;
          for (int64_t e = 0; e < dim; ++e) o[e] += p * vv[e];
        }
      }
    }
  return out;
}

constexpr char kUpdateCache[] = "llama::update_cache.out";
constexpr char kCustomSdpa[] = "llama::custom_sdpa.out";

}  // namespace

namespace edgedistill {

void register_llm_kernels() {
  // At first use, not at load: a process that already holds ExecuTorch's own LLM kernels in the same registry
  // (a Python process with the executorch wheel) keeps them, since registering a name twice aborts.
  static std::once_flag once;
  std::call_once(once, [] {
    using executorch::extension::make_boxed_kernel;
    if (!executorch::runtime::registry_has_op_function(kUpdateCache))
      (void)executorch::runtime::register_kernel(make_boxed_kernel(kUpdateCache,
                                                                   EXECUTORCH_FN(update_cache_out, kUpdateCache)));
    if (!executorch::runtime::registry_has_op_function(kCustomSdpa))
      (void)executorch::runtime::register_kernel(make_boxed_kernel(kCustomSdpa,
                                                                   EXECUTORCH_FN(custom_sdpa_out, kCustomSdpa)));
  });
}

}  // namespace edgedistill
