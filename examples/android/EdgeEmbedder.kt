// Sentence embeddings from an edgedistill bundle on Android (Kotlin).
// ExecuTorch bundles (.pte): the edgedistill C API through JNI (java/.../NativeBundle.java + jni/edgedistill_jni.c):
//   it verifies the bundle, tokenizes exactly as the Python runtime and runs the program, in one native library.
// ONNX bundles: onnxruntime-android (ai.onnxruntime.OrtEnvironment / OrtSession / OnnxTensor), with DJL's binding
//   of the Hugging Face `tokenizers` library reading the bundle's tokenizer.json (the C API refuses ONNX bundles).
// Not compiled here (no Kotlin compiler, Android SDK or NDK); the Java/JNI part was compiled and run on Linux.
package com.example.edgedistill

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import org.json.JSONObject
import java.io.File
import java.nio.LongBuffer

class EdgeEmbedder(bundleDir: File, threads: Int = 4, expectId: String? = null) : AutoCloseable {
    private val manifest = JSONObject(File(bundleDir, "manifest.json").readText())
    private val backend = manifest.optString("backend", "onnxruntime")

    // .pte bundles: one handle, shareable across threads (the C library serialises calls on it).
    private val native: NativeBundle? = if (backend == "executorch") {
        NativeBundle.setThreads(threads)  // process-wide; before the first bundle is opened
        NativeBundle(bundleDir.absolutePath, expectId)  // throws RuntimeException with the one-line reason
    } else null

    // ONNX bundles: onnxruntime + DJL tokenizer, truncation at the manifest's max_length.
    private val env = if (native == null) OrtEnvironment.getEnvironment() else null
    private val session: OrtSession? = env?.let {
        val opts = OrtSession.SessionOptions().apply { setIntraOpNumThreads(threads) }
        it.createSession(File(bundleDir, manifest.getString("model_file")).absolutePath, opts)
    }
    private val tokenizer: HuggingFaceTokenizer? = if (native == null) HuggingFaceTokenizer.builder()
        .optTokenizerPath(File(bundleDir, "tokenizer.json").toPath())
        .optTruncation(true)
        .optMaxLength(manifest.getInt("max_length"))
        .build() else null
    private val inputNames = (0 until manifest.getJSONArray("inputs").length())
        .map { manifest.getJSONArray("inputs").getJSONObject(it).getString("name") }

    /** The pooled (and, if the manifest says so, L2-normalised) embedding of one text. */
    fun embed(text: String): FloatArray {
        native?.let { return it.embed(text) }
        val enc = tokenizer!!.encode(text)
        val columns = mapOf(
            "input_ids" to enc.ids, "attention_mask" to enc.attentionMask, "token_type_ids" to enc.typeIds,
        )
        val shape = longArrayOf(1, enc.ids.size.toLong())
        val feeds = inputNames.associateWith { OnnxTensor.createTensor(env, LongBuffer.wrap(columns.getValue(it)), shape) }
        try {
            session!!.run(feeds).use { result ->
                @Suppress("UNCHECKED_CAST")
                return (result.get("sentence_embedding").get().value as Array<FloatArray>)[0]
            }
        } finally {
            feeds.values.forEach { it.close() }
        }
    }

    /** Classifier bundles (.pte): the label and its probability. */
    fun predict(text: String): Pair<String, Float> {
        val probs = native!!.predict(text)
        val best = probs.indices.maxByOrNull { probs[it] }!!
        val labels = native.labels()
        return Pair(if (best < labels.size) labels[best] else best.toString(), probs[best])
    }

    override fun close() {
        native?.close()
        session?.close()
        tokenizer?.close()
    }
}
