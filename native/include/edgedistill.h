/* edgedistill native runtime: a plain C API over one verified bundle, for C, C++, JNI and Swift callers.
 *
 * Every call that can fail returns 0 on success and -1 on failure, and then writes one line (the same
 * wording as the Python runtime's errors) into err[err_len] when err is not NULL. Strings are UTF-8.
 * One handle may be shared by any number of threads: calls on it are serialised internally (an
 * ExecuTorch method holds state and is not re-entrant), so results equal sequential calls.
 */
#ifndef EDGEDISTILL_H
#define EDGEDISTILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ed_bundle ed_bundle;

typedef struct ed_sampling {
  int32_t max_new_tokens; /* default 64 */
  float temperature;      /* 0 = greedy */
  int32_t top_k;          /* 0 = off */
  float top_p;            /* 1 = off */
  uint64_t seed;
} ed_sampling;

/* The version of this library, e.g. "0.1.0". */
const char* ed_version(void);

/* Threads of the process-wide ExecuTorch (XNNPACK) thread pool; the default is one per core. Call it before
 * ed_open: a loaded program keeps the pool it was loaded with. ed_threads() reports the current count. */
int ed_set_threads(int32_t n, char* err, size_t err_len);
int32_t ed_threads(void);

/* Verify a bundle folder without loading its model: manifest, format version, every file's sha256, no
 * unlisted file; expect_id (NULL = any) pins the bundle id. id_out (65 bytes, may be NULL) receives the id. */
int ed_verify(const char* path, const char* expect_id, char* id_out, char* err, size_t err_len);

/* Verify and open a bundle (.pte model; sentence-embedding, classification or causal-lm). NULL on failure. */
ed_bundle* ed_open(const char* path, const char* expect_id, char* err, size_t err_len);
void ed_close(ed_bundle* b);

const char* ed_bundle_id(const ed_bundle* b); /* sha256 of manifest.json */
const char* ed_task(const ed_bundle* b);      /* "sentence-embedding", "classification", ... or "causal-lm" */
size_t ed_num_labels(const ed_bundle* b);
const char* ed_label(const ed_bundle* b, size_t i); /* NULL when out of range */

/* Token ids as the Python runtime feeds them (special tokens, truncated to max_length unless truncate is 0,
 * not padded). *n receives the count; ids/types/mask may be NULL to ask only for it (cap is then ignored). */
int ed_tokenize(ed_bundle* b, const char* text, size_t text_len, int truncate, int64_t* ids, int64_t* type_ids,
                size_t cap, size_t* n, char* err, size_t err_len);

/* Sentence embedding of one text into out[cap]; *dim receives its size. */
int ed_embed(ed_bundle* b, const char* text, size_t text_len, float* out, size_t cap, size_t* dim, char* err,
             size_t err_len);

/* Classifier: class probabilities into probs[cap] (*n classes), the top class in *label (name: ed_label).
 * exit_threshold < 0: the final head; otherwise the first early exit whose top probability reaches it
 * (bundles with early exits), and *exit_used receives its block index, or -1 for the final head. */
int ed_predict(ed_bundle* b, const char* text, size_t text_len, float exit_threshold, float* probs, size_t cap,
               size_t* n, int32_t* label, int32_t* exit_used, char* err, size_t err_len);

/* Causal LM: encode a prompt as the Python runtime does without a chat template (BOS added when the bundle
 * says so). The chat template is the caller's: render it, then encode the result with add_bos = 0. */
int ed_encode_prompt(ed_bundle* b, const char* text, size_t text_len, int add_bos, int64_t* ids, size_t cap,
                     size_t* n, char* err, size_t err_len);
/* Generate from prompt ids; stops at the bundle's stop ids, max_new_tokens or a full context. */
int ed_generate(ed_bundle* b, const int64_t* prompt, size_t prompt_len, const ed_sampling* sampling, int64_t* out,
                size_t cap, size_t* n_out, char* err, size_t err_len);
/* Token ids back to text (special tokens skipped); returns a malloc'd string the caller frees, NULL on error. */
char* ed_decode(ed_bundle* b, const int64_t* ids, size_t n, char* err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* EDGEDISTILL_H */
