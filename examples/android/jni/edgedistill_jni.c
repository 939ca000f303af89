/* JNI glue: com.example.edgedistill.NativeBundle -> the edgedistill C API (native/include/edgedistill.h).
 *
 * Text crosses as UTF-8 byte arrays (String.getBytes(UTF_8) on the Java side), not through GetStringUTFChars:
 * that returns "modified UTF-8", which spells emoji and other non-BMP characters as surrogate pairs the
 * tokenizer rightly refuses as invalid UTF-8. Every failure is thrown as a RuntimeException carrying the C
 * API's one-line message. Compiled and run on Linux x86-64 against the JDK's jni.h only (see README.md).
 */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgedistill.h"

#define ERR_LEN 1024

static void throw_error(JNIEnv* env, const char* msg) {
  jclass cls = (*env)->FindClass(env, "java/lang/RuntimeException");
  if (cls) (*env)->ThrowNew(env, cls, msg);
}

static ed_bundle* handle(JNIEnv* env, jlong h) {
  if (!h) throw_error(env, "the bundle is closed");
  return (ed_bundle*)(intptr_t)h;
}

/* The bytes of a Java byte[] as a malloc'd buffer (a JNI array may move; the C API keeps no pointer). */
static char* bytes_of(JNIEnv* env, jbyteArray a, size_t* len) {
  jsize n = a ? (*env)->GetArrayLength(env, a) : 0;
  char* buf = (char*)malloc((size_t)n + 1);
  if (!buf) {
    throw_error(env, "out of memory");
    return NULL;
  }
  if (n) (*env)->GetByteArrayRegion(env, a, 0, n, (jbyte*)buf);
  buf[n] = '\0';
  *len = (size_t)n;
  return buf;
}

JNIEXPORT jint JNICALL Java_com_example_edgedistill_NativeBundle_setThreads(JNIEnv* env, jclass cls, jint n) {
  char err[ERR_LEN];
  (void)cls;
  if (ed_set_threads(n, err, sizeof err)) throw_error(env, err);
  return ed_threads();
}

JNIEXPORT jlong JNICALL Java_com_example_edgedistill_NativeBundle_open(JNIEnv* env, jclass cls, jstring path,
                                                                      jstring expect_id) {
  char err[ERR_LEN];
  (void)cls;
  /* file paths and hex ids are ASCII here; modified UTF-8 is fine for them */
  const char* p = (*env)->GetStringUTFChars(env, path, NULL);
  const char* id = expect_id ? (*env)->GetStringUTFChars(env, expect_id, NULL) : NULL;
  ed_bundle* b = ed_open(p, id, err, sizeof err);
  (*env)->ReleaseStringUTFChars(env, path, p);
  if (id) (*env)->ReleaseStringUTFChars(env, expect_id, id);
  if (!b) throw_error(env, err);
  return (jlong)(intptr_t)b;
}

JNIEXPORT void JNICALL Java_com_example_edgedistill_NativeBundle_close(JNIEnv* env, jclass cls, jlong h) {
  (void)env;
  (void)cls;
  ed_close((ed_bundle*)(intptr_t)h);
}

JNIEXPORT jstring JNICALL Java_com_example_edgedistill_NativeBundle_task(JNIEnv* env, jclass cls, jlong h) {
  ed_bundle* b = handle(env, h);
  (void)cls;
  return b ? (*env)->NewStringUTF(env, ed_task(b)) : NULL;
}

JNIEXPORT jstring JNICALL Java_com_example_edgedistill_NativeBundle_bundleId(JNIEnv* env, jclass cls, jlong h) {
  ed_bundle* b = handle(env, h);
  (void)cls;
  return b ? (*env)->NewStringUTF(env, ed_bundle_id(b)) : NULL;
}

JNIEXPORT jobjectArray JNICALL Java_com_example_edgedistill_NativeBundle_labels(JNIEnv* env, jclass cls, jlong h) {
  ed_bundle* b = handle(env, h);
  (void)cls;
  if (!b) return NULL;
  size_t n = ed_num_labels(b);
  jobjectArray out = (*env)->NewObjectArray(env, (jsize)n, (*env)->FindClass(env, "java/lang/String"), NULL);
  for (size_t i = 0; out && i < n; ++i)
    (*env)->SetObjectArrayElement(env, out, (jsize)i, (*env)->NewStringUTF(env, ed_label(b, i)));
  return out;
}

JNIEXPORT jfloatArray JNICALL Java_com_example_edgedistill_NativeBundle_embed(JNIEnv* env, jclass cls, jlong h,
                                                                             jbyteArray utf8) {
  char err[ERR_LEN];
  size_t len = 0, dim = 0;
  ed_bundle* b = handle(env, h);
  (void)cls;
  if (!b) return NULL;
  char* text = bytes_of(env, utf8, &len);
  if (!text) return NULL;
  float buf[4096];
  int rc = ed_embed(b, text, len, buf, 4096, &dim, err, sizeof err);
  free(text);
  if (rc) {
    throw_error(env, err);
    return NULL;
  }
  jfloatArray out = (*env)->NewFloatArray(env, (jsize)dim);
  if (out) (*env)->SetFloatArrayRegion(env, out, 0, (jsize)dim, buf);
  return out;
}

/* Class probabilities; the label is their argmax (names from labels()). exitThreshold < 0: the final head. */
JNIEXPORT jfloatArray JNICALL Java_com_example_edgedistill_NativeBundle_predict(JNIEnv* env, jclass cls, jlong h,
                                                                               jbyteArray utf8, jfloat threshold) {
  char err[ERR_LEN];
  size_t len = 0, n = 0;
  int32_t label = 0, exit_used = -1;
  ed_bundle* b = handle(env, h);
  (void)cls;
  if (!b) return NULL;
  char* text = bytes_of(env, utf8, &len);
  if (!text) return NULL;
  float probs[1024];
  int rc = ed_predict(b, text, len, threshold, probs, 1024, &n, &label, &exit_used, err, sizeof err);
  free(text);
  if (rc) {
    throw_error(env, err);
    return NULL;
  }
  jfloatArray out = (*env)->NewFloatArray(env, (jsize)n);
  if (out) (*env)->SetFloatArrayRegion(env, out, 0, (jsize)n, probs);
  return out;
}

/* Prompt text (no chat template: render it in the app, then pass addBos = false) -> generated token ids. */
JNIEXPORT jlongArray JNICALL Java_com_example_edgedistill_NativeBundle_generate(
    JNIEnv* env, jclass cls, jlong h, jbyteArray utf8, jboolean add_bos, jint max_new_tokens, jfloat temperature,
    jint top_k, jfloat top_p, jlong seed) {
  char err[ERR_LEN];
  size_t len = 0, n_prompt = 0, n_out = 0;
  ed_bundle* b = handle(env, h);
  (void)cls;
  if (!b) return NULL;
  char* text = bytes_of(env, utf8, &len);
  if (!text) return NULL;
  int rc = ed_encode_prompt(b, text, len, add_bos, NULL, 0, &n_prompt, err, sizeof err);
  int64_t* prompt = rc ? NULL : (int64_t*)malloc((n_prompt + 1) * sizeof(int64_t));
  if (!rc && prompt) rc = ed_encode_prompt(b, text, len, add_bos, prompt, n_prompt, &n_prompt, err, sizeof err);
  free(text);
  size_t cap = max_new_tokens > 0 ? (size_t)max_new_tokens : 1;
  int64_t* out = (int64_t*)malloc(cap * sizeof(int64_t));
  if (!rc && prompt && out) {
    ed_sampling s = {max_new_tokens, temperature, top_k, top_p, (uint64_t)seed};
    rc = ed_generate(b, prompt, n_prompt, &s, out, cap, &n_out, err, sizeof err);
  } else if (!rc) {
    rc = -1;
    strcpy(err, "out of memory");
  }
  free(prompt);
  jlongArray result = NULL;
  if (rc) {
    throw_error(env, err);
  } else {
    result = (*env)->NewLongArray(env, (jsize)n_out);
    if (result) (*env)->SetLongArrayRegion(env, result, 0, (jsize)n_out, (const jlong*)out);
  }
  free(out);
  return result;
}

/* Token ids -> UTF-8 bytes (special tokens skipped); new String(bytes, UTF_8) on the Java side. */
JNIEXPORT jbyteArray JNICALL Java_com_example_edgedistill_NativeBundle_decode(JNIEnv* env, jclass cls, jlong h,
                                                                             jlongArray ids) {
  char err[ERR_LEN];
  ed_bundle* b = handle(env, h);
  (void)cls;
  if (!b) return NULL;
  jsize n = (*env)->GetArrayLength(env, ids);
  int64_t* buf = (int64_t*)malloc(((size_t)n + 1) * sizeof(int64_t));
  if (!buf) {
    throw_error(env, "out of memory");
    return NULL;
  }
  (*env)->GetLongArrayRegion(env, ids, 0, n, (jlong*)buf);
  char* text = ed_decode(b, buf, (size_t)n, err, sizeof err);
  free(buf);
  if (!text) {
    throw_error(env, err);
    return NULL;
  }
  jsize len = (jsize)strlen(text);
  jbyteArray out = (*env)->NewByteArray(env, len);
  if (out) (*env)->SetByteArrayRegion(env, out, 0, len, (const jbyte*)text);
  free(text);
  return out;
}
