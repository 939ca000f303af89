#pragma once

namespace edgedistill {

// Registers llama::update_cache.out and llama::custom_sdpa.out (programs exported with attention "custom") unless
// the process already has them; safe to call from several threads and more than once.
void register_llm_kernels();

}  // namespace edgedistill
